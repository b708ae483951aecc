// Test-only schema for tests/test_collector_user_schema.py: a user's own event
// schema, numbered unlike the sample one (event_schemas/event.thrift has
// 1 source, 2 action, 3 noun, 4 client_timestamp, 5 uuid), with a nested
// struct, a list of structs, a map and a set, and one required field.
//
// Regenerate (Debian thrift-compiler 0.17) from the repository root with:
//   thrift --gen py -out tests/thrift_gen tests/thrift/shop.thrift

namespace py shop

struct Item {
    1: optional string sku;
    2: optional i32 quantity;
    3: optional double price;
}

struct Cart {
    1: optional string cart_id;
    2: optional list<Item> items;
    3: optional map<string, i64> coupons;
    4: optional set<string> labels;
    5: optional bool gift;
}

struct ShopEvent {
    1: optional string source;
    2: optional i64 client_timestamp;
    3: optional string uuid;
    4: required string action;
    5: optional string noun;
    6: optional Cart cart;
    7: optional string referrer_id;
}
