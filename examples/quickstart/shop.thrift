// The quick start's schema: what a small shop records when an item goes in a cart.
// The generated Python code (shop_events/) is committed; after editing, regenerate
// it with Debian's thrift-compiler:  thrift --gen py -out . shop.thrift && rm __init__.py
namespace py shop_events

struct CartEvent {
    1: optional string source;
    2: optional i64 client_timestamp;
    3: optional string uuid;
    4: optional string action;
    5: optional string noun;
    6: optional i64 item_id;
    7: optional i32 quantity;
}
