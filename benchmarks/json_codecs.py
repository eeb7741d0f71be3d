"""How fast each JSON library encodes and decodes a small order document.

    python benchmarks/json_codecs.py

The numbers chose ``kstreams.serializers``' library: orjson when installed,
the standard library otherwise. Best of 5 repetitions, microseconds per call.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from typing import Any

DOC: dict[str, Any] = {
    "order_id": 123456,
    "customer": "user-42",
    "items": [{"sku": f"sku-{i}", "qty": i, "price": 9.99} for i in range(5)],
    "paid": True,
    "note": None,
}
RAW = json.dumps(DOC).encode()
CALLS = 50_000


def best_us(call: Callable[[], object]) -> float:
    return min(timeit.repeat(call, number=CALLS, repeat=5)) / CALLS * 1e6


def main() -> None:
    cases: dict[str, Callable[[], object]] = {
        "json   encode": lambda: json.dumps(DOC, separators=(",", ":")).encode(),
        "json   decode": lambda: json.loads(RAW),
    }
    try:
        import orjson
    except ImportError:
        print("orjson is not installed: pip install 'kstreams-hex[json]'")
    else:
        cases["orjson encode"] = lambda: orjson.dumps(DOC)
        cases["orjson decode"] = lambda: orjson.loads(RAW)
    for name, call in cases.items():
        print(f"{name}: {best_us(call):6.2f} us")


if __name__ == "__main__":
    main()
