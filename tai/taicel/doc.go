// Package taicel builds tai policies from rules written in CEL, the Common
// Expression Language (cel.dev), and keeps them in files that can be
// changed while the service runs.
//
// A rule is a name, a CEL expression and an action. The expression reads
// the signal's payload (payload.Amount), its context (signal.id,
// signal.kind, signal.key, signal.time), the rule set's named sets
// (payload.Country in sets.countries) and any variables the caller supplies
// per signal (attempts > 5, for state such as velocity counts). The action
// is either a weight or a verdict:
//
//   - A scored rule has a Weight. Its expression returns a bool (true adds
//     the whole weight) or a double risk in [0, 1] that is multiplied by the
//     weight, exactly as a tai.Rule of tai.NewScored. The scores add up and
//     the set's thresholds turn the sum into Allow, Review or Deny.
//   - A verdict rule has a Verdict (allow, review or deny). Its expression
//     returns a bool; the first verdict rule, in order, whose expression is
//     true decides the signal outright, before any scored rule runs:
//     blacklists and allowlists.
//
// A rule's Reason is a template: each {{expr}} in it is a CEL expression
// over the same variables, checked when the rule is compiled and evaluated
// only when the rule fires ("{{payload.Amount}} over the limit"). The
// strings extension is on, so {{"%.2f".format([payload.Amount])}} formats a
// number. An {{expr}} ends at the first "}}", so an expression in a reason
// cannot contain "}}" (a nested map literal). A list, a map or a struct
// is written as fmt's %v writes it but for two things, so that it is
// written the same when its decision is replayed: where fmt writes the
// address of a pointer within it, a reason writes what it points to
// (<nil> for a nil one, <cycle> where a value comes again within
// itself); and a struct is written with the fields CEL reads, its
// exported and embedded ones but for channels, funcs and complex
// numbers. No more than MaxReasonValue bytes of one value are written.
// A time, alone or within a value, is written in the zone a record
// keeps, for the same reason: a record keeps its offset, not its zone's
// name, so a time is written in UTC when its offset is 0 (or has
// seconds), and otherwise with its offset alone
// ("2026-03-01 12:00:00 +0100 +0100", not "... +0100 CET").
//
// # Typed rules
//
// The payload's Go struct type T is declared to CEL (through cel-go's
// native types): its exported fields, under their Go names, are the fields
// an expression can read. An expression that names a field T does not have,
// compares a string with a number, or returns something other than a bool
// (or a double, for a scored rule) fails when the set is compiled, never
// at evaluation, with a [*CompileError] naming the rule, the line of its
// expression (or of its reason, for an error in a {{expr}}) in the rule
// file (for one a rule takes through a YAML merge key, <<: *base, the
// line where the merged mapping has it), and the line:column in the
// expression of an error inside it (a result of the wrong type is about
// the expression as a whole, and has none). So does a constant CEL
// folds when the set compiles and cannot: a regular expression that does
// not compile (payload.ID.matches('[')), a duration, timestamp or number
// that does not convert (duration('1x')), located at the call.
//
// A zero time.Time reads as the Go zero time, 0001-01-01T00:00:00Z,
// wherever it is: a field (payload.Start.getFullYear() == 1), behind a
// nil *time.Time or a nil embedded pointer, in a list or a map, in a
// struct held in an interface or read through dyn(), in a variable or in
// signal.time, and so it reads again when its record is replayed, with
// or without the Go type. (cel-go's native types read a zero time.Time
// field as 1970-01-01, the zero of a protobuf Timestamp; taicel reads
// the time fields of the struct types it finds from the payload's type
// itself. A struct type reachable only through an interface and
// registered by the caller's own EnvOptions, ext.NativeTypes, is read by
// cel-go: a zero time in it reads as 1970 live and year 1 replayed.)
//
// # Compile once, evaluate often
//
// [NewEnv] declares the payload type and the caller's variables;
// [Env.Compile] turns a [Spec] (a version, named sets, rules and
// thresholds) into a [Set], a tai.Policy. A Set is immutable: Evaluate is
// safe for concurrent use, takes no lock, and allocates little of its own
// (the variables of one evaluation, the contributions and the reasons that
// fire); cel-go allocates a value for each field an expression reads. A
// set of ten scored rules judges a signal in about 3 µs.
//
// # Limits
//
// A rule file can change while the service runs, so no rule may stall
// it: every expression, a rule's and each {{expr}} of its reason, has a
// cost limit, Options.MaxCost (DefaultMaxCost, 100,000, unless set). The
// cost is CEL's: about a unit per operation and per element a function
// or a comprehension (all, exists, filter, map, cel.bind) goes through,
// and a unit per character string.format and strings.quote write;
// L.all(x, x < 10) costs 2 + 5 per element of L. The expressions of the
// rule files of the payment and deployment examples cost at most 363
// (a reason of the deployment analysis that tries five formats), their
// freeze windows 14 each; an evaluation that reaches 100,000 has run
// for a few milliseconds.
//
// When a set compiles, CEL bounds the cost of each expression whose cost
// does not grow with the size of a value known only at evaluation: most
// rules over a typed payload, and comprehensions over list literals. An
// expression whose bound exceeds the limit does not compile (a
// *CompileError: a Loader refuses the file and keeps the running set);
// one whose bound is within it runs untracked, as fast as without a
// limit. The cost of the others (a comprehension over a list variable,
// two strings compared, a format or a quote, most expressions over a
// dynamic payload) is tracked as they run, for a few hundred
// nanoseconds per evaluation of a small expression, and an evaluation
// that exceeds the limit stops there: the signal fails with a
// *RuleError naming the rule and the limit, wrapping ErrCostLimit. It
// is a policy error like any other: it fails the signal, or allows it
// under tai.FailOpen. An operator over dyn operands, whose overload CEL
// picks only then (payload.A + payload.B or x in payload.L over a
// dynamic payload), counts as the overload it runs: the length of the
// strings it joins or compares, the elements of the list it searches.
// A concatenation of lists, l + m, which CEL makes without copying
// them, counts as the smaller of the two (a unit at least), so that no
// list has more elements than it cost to make: a list doubled in each
// of a chain of maps stops at the limit, not at 2⁴⁰ elements that x in
// l or l == m would go through.
// CEL counts what a function writes once it is
// written, so string.replace and list.join, which can write a string
// as long as the product of their inputs' lengths (a field replaced
// into itself), first work out the length of their result and stop
// the evaluation the same way, before writing it, when that length
// alone costs more than the limit. So does string.format, which writes
// a list as many times as its arguments hold it ("%s".format([[s, s,
// s]]), a list of such lists): it counts what it would write, the
// strings and bytes, the numbers as written (1e308 is 309 digits, a
// %.100f clause 100 after the point), and the brackets and separators
// of its lists and maps, and stops the evaluation when that count alone
// costs more than the limit.
//
// Evaluate stops a comprehension when its ctx ends, within a hundred
// iterations: the *RuleError names the rule and wraps ctx's error
// (errors.Is(err, context.DeadlineExceeded)) and its cause. An
// expression without a comprehension is not interrupted: its cost grows
// only with its length and the size of the values it reads. Under a ctx
// that can end, an expression with a comprehension costs about 0.4 µs
// more to start. A Shadow's sets and Backtest's workers stop with their
// ctx too; Replay has none, and only the cost limit bounds it.
//
// # Dynamic payloads
//
// An Env of map[string]any (NewEnv[map[string]any]) knows no Go type: the
// payload is a map(string, dyn) and every variable a set's expressions
// read that the Env does not declare (in Options.Vars or EnvOptions) is
// declared dyn when the set is compiled. Syntax is checked then,
// names only at evaluation, where a field or a variable that is missing
// fails the rule that reads it. The taikit command's backtest uses it; a
// service should use its payload's struct type, which has every field
// name and type checked when a set compiles.
//
// # Files and hot reload
//
// [Parse] reads a Spec from YAML (JSON is YAML too) strictly: an unknown
// field, a duplicate key, a second document or an item of a set with no
// value (a lone "-") is an error naming the line; an item of the rules
// with no value is no rule, and is left out.
// A [Loader] watches a rule file: it re-reads it every interval and, when
// its SHA-256 has changed, compiles the new set and swaps it in atomically.
// A file that does not parse or compile is refused with its error and the
// running set stays. Each signal is judged with one whole set, never a mix
// of two. Every reload and every refusal is reported to a callback and, if
// given, to a tai.Observer such as a kaizen.Audit, as a record carrying the
// set's version and the file's SHA-256. A panic in either is recovered and
// logged as a [*PanicError]; the Loader keeps watching.
//
// # Recording inputs
//
// With Options.RecordInputs, every decision a set makes carries in
// Decision.Inputs what the set read, as one JSON object, and a
// kaizen.Audit writes it onto the decision's line of the audit trail:
//
//	{"time":"2026-03-01T12:00:00Z",
//	 "payload":{"CustomerID":"cust_1","Country":"DE","Amount":5000.0},
//	 "vars":{"attempts":6,"spent_today":100.0},
//	 "verdict_rule":"blacklist"}
//
// The payload holds every field of T an expression reads under its Go
// name, but those named in Options.Unrecorded: card numbers, names,
// whatever must not reach a trail. An embedded struct is an object, and
// the fields promoted from it are written again beside it, as
// payload.Field reads them (zero behind a nil embedded pointer), so that
// a backtest without the Go type reads them too. This costs room: a
// field promoted through one embedded struct is written twice, one
// promoted through two four times (within each struct and beside it).
// A promoted field whose type can hold the struct it is promoted into
// again (the children of a tree, Post embedding Replies{Posts []Post})
// is written within its embedded struct only, or every level of the tree
// would double the record: a backtest without the Go type reads it by
// its embedded struct's name (payload.Replies.Posts, not payload.Posts).
// A field promoted through an embedded pointer to a type that is not
// exported, or that a field of its name hides, cannot be read back:
// NewEnv refuses to record it unless it is unrecorded. A nil pointer
// field to a number, a string, a bool, a time.Time or bytes is written as
// the zero value CEL reads it as (payload.Count == 0 for a nil *int), and
// marked in "nil" (see below); such a field that points to a nil []byte
// is written "" unmarked, and reads back pointing to an empty one, which
// CEL reads the same. Another nil pointer is written null: CEL
// reads the fields of a
// nil pointer to a struct as their zero values (payload.Risk.Score is
// 0.0), which a backtest without the Go type cannot, and fails the rules
// that read them there (Report.Errors counts them). Vars holds what Lookup
// returned for the declared variables; "verdict_rule" names the verdict
// rule that decided, when one did. Numbers keep their type: a float is
// always written with a '.' or an exponent, an int never is, so the JSON read without a Go type still
// tells an int from a double. Times are RFC 3339 strings with nanoseconds
// (a year beyond 9999 or before 0 with more digits or a minus sign,
// "10000-01-01T00:00:00Z", which DecodeInputs reads back too), []byte and
// a byte array ([32]byte, which CEL reads as bytes too) are
// base64, a time.Duration an int of nanoseconds, NaN and the
// infinities are the strings "NaN", "+Inf" and "-Inf". A string that is
// not valid UTF-8, which a JSON string cannot hold, is written with U+FFFD
// in place of each invalid byte, as encoding/json writes it, and reads
// back so: a rule that tells the bytes apart (size(bytes(payload.ID)),
// payload.ID == "\uFFFD") may decide otherwise when it is replayed, and a
// reason that writes the string differs. Where the payload
// and the variables hold timestamps, durations, bytes, uints (written
// as any int) and doubles that are NaN or infinite, the members
// "types" and "var_types" say so, following fields, indexes and map keys
// as "nil" does, or naming the type once for a list or a map whose
// elements all are of it ({"At":"timestamp","Stamps":"timestamp",
// "Legs":{"0":{"Code":"bytes"}}}); a map whose keys are ints, uints or
// bools, which JSON writes as the text of member names, is marked with a
// list of the keys' type and, if any, the marks of its values (["int"],
// ["bool","uint"]): a reader without the Go type (the
// taikit command's backtest) reads them with the CEL types a typed Env
// declares, so that payload.At < signal.time compares timestamps there
// too, payload.Count * 2u multiplies uints, payload.Level != payload.Level
// tells a NaN, and payload.ByID[7] finds its key. A value that is not of the type marked for it (a timestamp that
// is no RFC 3339 string) fails its replay with an error naming where it
// is. A nil slice, map or []byte is written empty ([], {}, ""),
// as CEL reads it, so that a reader without the Go type (the taikit
// command's backtest) reads it as CEL did; "nil" marks where the payload
// held those and the nil pointers written as zero values, outside its
// interface fields, as an object that follows
// the payload's fields, indexes and map keys down to a null for each
// ({"Items":null,"Lines":{"0":{"Tags":null}}}): has() and == on structs
// tell nil from empty, and Env.DecodeInputs reads them back nil. A
// payload or a variable nested more than 10000 deep (one
// that holds itself) cannot be recorded: the signal fails with an error
// naming it.
//
// [Env.DecodeInputs] reads such an object back, into T by field name and
// the variables with the Go types of their CEL types, and [Set.Replay]
// judges it again without Lookup: the same set makes the same decision,
// byte for byte (strings that are not UTF-8 aside, see above). The
// encoder is built once per Env, from the payload's type, and writes
// into a pooled buffer: recording costs one allocation and about 0.5 µs
// per decision for the ten-rule benchmark's payload (3.0 µs instead of
// 2.5 µs); without RecordInputs Evaluate costs what it did.
//
// # Shadow mode
//
// [NewShadow] puts a candidate set beside the live one: a [Shadow] is a
// tai.Policy that returns the live set's decision, and nothing else,
// while the candidate judges the same signal with the same variables
// (Lookup runs once). [Shadow.Stats] counts agreements, disagreements
// (different verdicts), the rules whose firing differs in them and the
// candidate's errors, which are never returned; ShadowOptions.OnDisagree
// sees each disagreement with both decisions (a panic there is logged,
// never the live signal's). Either set may be a Loader
// (both are a [Source]), so a candidate file can be edited while it runs
// in the shadow. Both must come from the same Env. Two sets cost about
// twice one: 4.8 µs for the ten-rule benchmark.
//
// # Backtesting
//
// [Backtest] replays an audit trail through a candidate set: each
// decision recorded with its inputs is judged again with the recorded
// payload and variables, and the [Report] counts the verdicts that flip
// (allow to deny, deny to review, ...), with the first examples of each
// and, given BacktestOptions.Amount, what they are worth; the rules
// involved in the changes; the decisions the candidate cannot judge, per
// rule; and, given labels (the signals known to be fraud, the deployments
// rolled back), the precision and recall of the recorded decisions and of
// the candidate's, side by side. The trail is read once, decoded and
// judged by several goroutines and merged in trail order, so the report
// does not depend on scheduling. Two cores replay about 200,000 decisions
// a second. The taikit command does the same from the shell, with a
// dynamic payload:
//
//	taikit backtest -rules candidate.yaml -audit audit.jsonl -amount payload.Amount
package taicel
