// Test-only schema for tests/test_tjson_identity.py: every Thrift type, in
// every position TJSONProtocol writes differently (field value, container
// element, map key), plus required fields, defaults, field ids declared out
// of order and a recursive struct.
//
// Regenerate (Debian thrift-compiler 0.17) from the repository root with:
//   thrift --gen py -out tests/thrift_gen tests/thrift/identity.thrift

namespace py identity

enum Color {
    RED = 1,
    GREEN = 2,
    BLUE = 42,
    NEGATIVE = -7,
}

struct Leaf {
    1: optional string name;
    2: optional i32 count;
}

// Field ids deliberately declared out of order and with gaps: TJSONProtocol
// writes fields sorted by id.
struct Scrambled {
    9: optional string nine;
    2: optional i64 two;
    30: optional bool thirty;
    1: optional double one;
    17: optional Leaf seventeen;
}

struct Scalars {
    1: optional bool a_bool;
    2: optional byte a_byte;
    3: optional i8 an_i8;
    4: optional i16 an_i16;
    5: optional i32 an_i32;
    6: optional i64 an_i64;
    7: optional double a_double;
    8: optional string a_string;
    9: optional binary a_binary;
    10: optional Color a_color;
    11: required string required_string;
    12: required i32 required_int;
    13: optional string with_default = "default \"text\"";
    14: optional i32 int_with_default = 5;
    15: string default_requiredness;
}

struct Lists {
    1: optional list<bool> bools;
    2: optional list<i8> i8s;
    3: optional list<i16> i16s;
    4: optional list<i32> i32s;
    5: optional list<i64> i64s;
    6: optional list<double> doubles;
    7: optional list<string> strings;
    8: optional list<binary> binaries;
    9: optional list<Color> colors;
    10: optional list<Leaf> leaves;
}

struct Sets {
    1: optional set<bool> bools;
    2: optional set<i8> i8s;
    3: optional set<i16> i16s;
    4: optional set<i32> i32s;
    5: optional set<i64> i64s;
    6: optional set<double> doubles;
    7: optional set<string> strings;
    8: optional set<binary> binaries;
    9: optional set<Color> colors;
}

struct Maps {
    1: optional map<bool, string> bool_keys;
    2: optional map<i8, i8> i8_keys;
    3: optional map<i16, i16> i16_keys;
    4: optional map<i32, bool> i32_keys;
    5: optional map<i64, double> i64_keys;
    6: optional map<double, i64> double_keys;
    7: optional map<string, string> string_keys;
    8: optional map<binary, binary> binary_keys;
    9: optional map<Color, Color> color_keys;
    10: optional map<string, Leaf> leaf_values;
}

struct Nested {
    1: optional list<list<i32>> list_of_lists;
    2: optional list<set<string>> list_of_sets;
    3: optional list<map<string, i64>> list_of_maps;
    4: optional map<string, list<Leaf>> map_of_lists;
    5: optional map<i32, map<string, double>> map_of_maps;
    6: optional set<list<i16>> set_of_lists;
    7: optional map<string, set<bool>> map_of_sets;
    8: optional list<list<list<string>>> deep;
}

struct Tree {
    1: optional string label;
    2: optional list<Tree> children;
}

struct Everything {
    1: optional Scalars scalars;
    2: optional Lists lists;
    3: optional Sets sets;
    4: optional Maps maps;
    5: optional Nested nested;
    6: optional Scrambled scrambled;
    7: optional Tree tree;
    8: optional list<Scalars> many;
}
