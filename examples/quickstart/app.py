"""A Pyramid app whose one view records a CartEvent: python app.py serves it on port 6543."""
from wsgiref.simple_server import make_server

from pyramid.config import Configurator

from shop_events.ttypes import CartEvent

SETTINGS = {
    "events.queue_name": "shop",  # the queue /events-shop, which the publisher drains
    "events.source": "shop",  # put into every event's source field
    # A queue a stock kernel allows (fs.mqueue.msg_max=10, msgsize_max=8192).
    "events.max_messages": "10",
    "events.max_message_size": "8192",
}


def add_to_cart(request):
    item_id = int(request.params["item"])
    # source, client_timestamp and uuid are filled in by baseplate_events.
    request.events_v2.put(CartEvent(action="add", noun="cart", item_id=item_id, quantity=1))
    return {"added": item_id}


def make_app():
    with Configurator(settings=SETTINGS) as config:
        config.include("baseplate_events.pyramid")
        config.add_route("cart", "/cart")
        config.add_view(add_to_cart, route_name="cart", request_method="POST", renderer="json")
        return config.make_wsgi_app()


if __name__ == "__main__":
    make_server("localhost", 6543, make_app()).serve_forever()
