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
// cannot contain "}}" (a nested map literal).
//
// # Typed rules
//
// The payload's Go struct type T is declared to CEL (through cel-go's
// native types): its exported fields, under their Go names, are the fields
// an expression can read. An expression that names a field T does not have,
// compares a string with a number, or returns something other than a bool
// (or a double, for a scored rule) fails when the set is compiled, with the
// rule's name and the line:column in the expression, never at evaluation.
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
// # Files and hot reload
//
// [Parse] reads a Spec from YAML (JSON is YAML too) strictly: an unknown
// field, a duplicate key or a second document is an error naming the line.
// A [Loader] watches a rule file: it re-reads it every interval and, when
// its SHA-256 has changed, compiles the new set and swaps it in atomically.
// A file that does not parse or compile is refused with its error and the
// running set stays. Each signal is judged with one whole set, never a mix
// of two. Every reload and every refusal is reported to a callback and, if
// given, to a tai.Observer such as a kaizen.Audit, as a record carrying the
// set's version and the file's SHA-256.
package taicel
