"""The harness jobs, one worker module each; they talk to each other only through function ids."""
