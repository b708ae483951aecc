"""The same view in Flask: python flask_app.py serves it on port 6543."""
from flask import Flask, g, request

from baseplate_events.flask import EventsExtension
from shop_events.ttypes import CartEvent

app = Flask("shop")
app.config.update(
    EVENTS_QUEUE_NAME="shop",  # the queue /events-shop, which the publisher drains
    # A queue a stock kernel allows (fs.mqueue.msg_max=10, msgsize_max=8192).
    EVENTS_MAX_MESSAGES=10,
    EVENTS_MAX_MESSAGE_SIZE=8192,
)
EventsExtension(app)


@app.post("/cart")
def add_to_cart():
    item_id = int(request.form["item"])
    # source, client_timestamp and uuid are filled in by baseplate_events.
    g.events_v2.put(CartEvent(action="add", noun="cart", item_id=item_id, quantity=1))
    return {"added": item_id}


if __name__ == "__main__":
    app.run("localhost", 6543)
