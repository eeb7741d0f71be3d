"""``StreamErrorPolicy`` under a module path kpn/kstreams users import it from."""

from kstreams.policies import StreamErrorPolicy

__all__ = ["StreamErrorPolicy"]
