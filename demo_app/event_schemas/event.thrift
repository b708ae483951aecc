// A sample v2 event schema, shaped like the ones an event pipeline uses.
// Regenerate the Python code after editing with:  make schema
// (runs Debian thrift-compiler 0.17: thrift --gen py -out . demo_app/event_schemas/event.thrift)

namespace py demo_app.event_schemas.event

enum Platform {
    WEB = 1,
    IOS = 2,
    ANDROID = 3,
}

struct Device {
    1: optional string id;
    2: optional Platform platform;
    3: optional i16 screen_width;
    4: optional i16 screen_height;
}

struct User {
    1: optional string user_id;
    2: optional bool logged_in;
    3: optional i64 cookie_created_timestamp;
    4: optional set<string> features;
}

struct Request {
    1: optional string user_agent;
    2: optional string domain;
    3: optional string ip;
    4: optional string base_url;
    5: optional i32 status_code;
}

struct Experiment {
    1: optional i64 id;
    2: optional string name;
    3: optional string variant;
    4: optional i8 bucket;
}

struct Event {
    1: optional string source;
    2: optional string action;
    3: optional string noun;
    4: optional i64 client_timestamp;
    5: optional string uuid;
    6: optional User user;
    7: optional Request request;
    8: optional Device device;
    9: optional list<Experiment> experiments;
    10: optional map<string, string> tags;
    11: optional double value;
    12: optional binary payload;
    13: optional map<string, double> measurements;
}

// What the publisher POSTs to /v2: a struct whose field 1 is the list of
// events, i.e. {"1":{"lst":["rec",N,e1,...]}} in TJSONProtocol. The reference
// collector (demo_app/collector.py) decodes batches with it.
struct EventBatch {
    1: optional list<Event> events;
}
