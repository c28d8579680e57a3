"""`iii-observe`: the observe protocol (observe.v1). See `module` for the protocol, `filters` for the
filter language, `access` for who may observe what."""

from teamster.engine.modules.observe.module import Observers

__all__ = ["Observers"]
