// The shapes benchmark's schema (python -m benchmarks.collector_shapes): what the
// varied mix lacks. A recursive struct (a category tree) and containers of
// containers that are mostly, or always, empty.
// Regenerate: thrift --gen py -out /tmp/gen benchmarks/shapes.thrift and copy
// /tmp/gen/benchmarks/shapes/*.py here.
namespace py benchmarks.shapes

struct Category {
  1: string name,
  2: i32 items,
  3: list<Category> children,
}

struct Listing {
  1: required string uuid,
  2: i64 timestamp_ms,
  3: Category root,
  4: list<list<string>> tag_groups,
  5: map<string, list<i32>> ranks,
  6: list<map<string, string>> notes,
  7: binary thumbnail,
}
