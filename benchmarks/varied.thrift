// The benchmarks' varied schema: a shop's checkout event, with every shape a
// site's schema has (nested structs, lists of structs, maps with string and
// integer keys, sets, binary, i8..i64, doubles, strings). Not the sample schema.
// Regenerate: thrift --gen py -out /tmp/gen benchmarks/varied.thrift and copy
// /tmp/gen/benchmarks/varied/*.py here (see benchmarks/varied_events.py).
namespace py benchmarks.varied

enum Channel {
  WEB = 1,
  IOS = 2,
  ANDROID = 3,
}

struct Money {
  1: i64 micros,
  2: string currency,
}

struct LineItem {
  1: required string sku,
  2: i16 quantity,
  3: Money unit_price,
  4: set<string> labels,
  5: double discount,
}

struct Geo {
  1: double lat,
  2: double lon,
  3: i8 accuracy,
  4: string city,
}

struct Client {
  1: string user_agent,
  2: binary fingerprint,
  3: Geo geo,
  4: list<i32> screen,
  5: bool touch,
}

struct Checkout {
  1: required string uuid,
  2: i64 timestamp_ms,
  3: string kind,
  4: Client client,
  5: list<LineItem> items,
  6: map<string, string> attributes,
  7: map<i32, double> scores,
  8: map<i64, list<string>> history,
  9: set<i16> flags,
  10: double total,
  11: i8 version,
  12: string note,
  13: list<list<i8>> matrix,
  14: Channel channel,
  15: map<string, Money> taxes,
  16: binary payload,
}
