"""The demo's Pyramid app: a small shop whose views record v2 events.

It is set up exactly as the README tells a Pyramid developer to:
``config.include("baseplate_events.pyramid")`` and ``events.*`` settings; each
view builds an ``Event`` of the sample schema and calls
``request.events_v2.put(event)``, leaving ``source``, ``client_timestamp`` and
``uuid`` to the integration's auto-fill. Each view answers JSON that names the
uuids of the events it put, so that the demo runner can look for them at the
collector.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from baseplate_events import EventQueueFullError

from .event_schemas.event.ttypes import Event, Experiment
from .event_schemas.event.ttypes import Request as RequestInfo

SOURCE = "demo-shop"

PRODUCTS: Dict[str, Dict[str, Any]] = {
    "kettle": {"name": "Kettle", "price": 24.5},
    "teapot": {"name": "Teapot", "price": 31.0},
    "mug": {"name": "Mug", "price": 7.25},
    "tea": {"name": "Loose-leaf tea, 250 g", "price": 12.9},
}


def _request_info(request: Request, status: int = 200) -> RequestInfo:
    return RequestInfo(
        user_agent=request.user_agent,
        domain=request.domain,
        ip=request.client_addr,
        base_url=request.path,
        status_code=status,
    )


def _put(request: Request, event: Event) -> Dict[str, Any]:
    """Put one event and say which, for the JSON answer."""
    request.events_v2.put(event)
    return {"uuid": event.uuid, "queue": "v2", "source": SOURCE, "action": event.action}


def _price(product_id: str) -> float:
    return float(PRODUCTS.get(product_id, {"price": 0.0})["price"])


def _ranking_experiment(request: Request) -> Experiment:
    bucket = sum(map(ord, request.client_addr or "")) % 100
    return Experiment(id=7, name="search_ranking", variant="bm25" if bucket < 50 else "neural",
                      bucket=bucket)


def view_product(request: Request) -> Dict[str, Any]:
    product_id = request.matchdict["product_id"]
    product = PRODUCTS.get(product_id)
    if product is None:
        request.response.status = 404
    status = 200 if product else 404
    event = Event(action="view", noun="product", request=_request_info(request, status),
                  tags={"product_id": product_id}, experiments=[_ranking_experiment(request)])
    return {"product": product, "events": [_put(request, event)]}


def search(request: Request) -> Dict[str, Any]:
    query = request.params.get("q", "").strip().lower()
    hits: List[str] = [pid for pid, p in PRODUCTS.items() if query in p["name"].lower()]
    event = Event(action="search", noun="results", request=_request_info(request),
                  tags={"query": query}, measurements={"results": float(len(hits))},
                  experiments=[_ranking_experiment(request)])
    return {"results": hits, "events": [_put(request, event)]}


def add_to_cart(request: Request) -> Dict[str, Any]:
    body = request.json_body
    product_id = str(body.get("product_id", ""))
    quantity = int(body.get("quantity", 1))
    price = _price(product_id)
    event = Event(action="add", noun="cart_item", request=_request_info(request),
                  value=price * quantity, tags={"product_id": product_id},
                  measurements={"price": price, "quantity": float(quantity)})
    return {"added": product_id, "events": [_put(request, event)]}


def checkout(request: Request) -> Dict[str, Any]:
    items: List[Dict[str, Any]] = request.json_body.get("items", [])
    total = sum(_price(str(i.get("product_id", ""))) * int(i.get("quantity", 1)) for i in items)
    event = Event(action="purchase", noun="order", request=_request_info(request),
                  value=round(total, 2), tags={"currency": "EUR"},
                  measurements={"items": float(len(items)), "total": round(total, 2)})
    return {"total": round(total, 2), "events": [_put(request, event)]}


def queue_full(exc: EventQueueFullError, request: Request) -> Response:
    """A full queue means the publisher is behind: tell the client to retry shortly."""
    response = Response(json_body={"error": str(exc)}, status=503)
    response.headers["Retry-After"] = "1"
    return response


def make_app(
    queue_name: str,
    *,
    max_messages: int = 10,
    max_message_size: int = 8192,
    put_timeout: float = 0.5,
    extra_settings: Optional[Dict[str, Any]] = None,
) -> Any:
    """Build the shop's WSGI app, putting its events on ``/events-<queue_name>``."""
    settings: Dict[str, Any] = {
        "events.queue_name": queue_name,
        "events.source": SOURCE,
        "events.max_messages": max_messages,
        "events.max_message_size": max_message_size,
        # A burst may briefly fill a 10-message queue; wait a little for the
        # publisher to make room rather than fail the put at once.
        "events.put_timeout": put_timeout,
        "events.errors": "raise",
    }
    settings.update(extra_settings or {})
    with Configurator(settings=settings) as config:
        config.include("baseplate_events.pyramid")
        config.add_route("product", "/products/{product_id}", request_method="GET")
        config.add_route("search", "/search", request_method="GET")
        config.add_route("cart", "/cart", request_method="POST")
        config.add_route("checkout", "/checkout", request_method="POST")
        config.add_view(view_product, route_name="product", renderer="json")
        config.add_view(search, route_name="search", renderer="json")
        config.add_view(add_to_cart, route_name="cart", renderer="json")
        config.add_view(checkout, route_name="checkout", renderer="json")
        config.add_view(queue_full, context=EventQueueFullError)
        return config.make_wsgi_app()
