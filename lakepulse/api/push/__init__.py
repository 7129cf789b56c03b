"""Live push (SSE) of a tenant's updates: `GET /v1/stream` (lakepulse/api/routes/stream.py).

One Kafka consumer per API process (feed.py) reads the speed layer's topics; each record becomes an event of
its tenant (shapes.py), serialised once and copied into the bounded mailboxes of that tenant's viewers
(fanout.py); hub.py joins the two across the thread boundary.

Every event is one SSE message, `id: <epoch>-<seq>` and one `data:` line of JSON with a `type` (no `event:`
field, so a browser's `onmessage` gets them all). Times are RFC 3339 UTC; a field without a value is absent.

- `metric`: the tenant's value of one catalog metric over one minute, all dimension tuples merged as the series
  endpoint merges them (speed layer, not final):
  `{"type": "metric", "tenant", "metric", "unit", "window_start", "window_end", "value", "count", "as_of",
  "quantiles"?}` — `value` by kind (count, sum, distinct estimate, mean); `quantiles` (p50/p90/p99) for
  distributions; `as_of` is when the streaming job last wrote one of the minute's rows.
- `live_order`: `{"type": "live_order", "tenant", "order_id", "status", "status_at", "amount", "currency",
  "prep_seconds", "food_rating", "delivery_rating", "rated_at", "as_of"}`.
- `courier`: `{"type": "courier", "tenant", "courier_id", "status", "order_id", "status_at", "is_waiting",
  "as_of"}`.
- `alert`: `{"type": "alert", "tenant", "id", "breach_id", "rule_id", "status" (firing | resolved), "reason",
  "metric", "value", "threshold", "condition", "window_minutes", "window_end", "anomaly", "baseline_mean",
  "baseline_std", "dimensions"}` (never the webhook channel).
- `reset`: `{"type": "reset", "tenant", "reason"}`: events were missed and cannot be replayed (a resume
  from another process, or too long ago): read the state again (`GET /v1/live`, the series), then carry on.
"""

from lakepulse.api.push.fanout import Fanout, Viewer, ViewerCapReached
from lakepulse.api.push.hub import PushHub
from lakepulse.api.push.shapes import Shaper, Update

__all__ = ["Fanout", "PushHub", "Shaper", "Update", "Viewer", "ViewerCapReached"]
