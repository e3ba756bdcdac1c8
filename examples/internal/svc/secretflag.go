package svc

import "flag"

// SecretVar defines a string flag, value its default (from the
// environment, say), as fs.StringVar does, but whose help does not show
// the default: it may be a token, and -h output lands in terminals, logs
// and issue reports.
//
// The flag sets the value *p holds when SecretVar returns, not the
// variable p: fs.Parse changes copies of *p made before it too, and a
// Secret assigned to *p before fs.Parse is not set by the flag. (A flag
// bound to p itself would be a flag.Value of its own, which -h shows as
// "value", not "string".)
func SecretVar(fs *flag.FlagSet, p *Secret, name, value, usage string) {
	*p = Secret{v: new(string)}
	fs.StringVar(p.v, name, value, usage)
	fs.Lookup(name).DefValue = "" // what -h shows
}

// URLVar defines a string flag holding a URL (or NATS's comma-separated
// list of them), value its default, as fs.StringVar does, but whose help
// shows the default with passwords and tokens redacted, as RedactURL does.
// The flag sets the value *p holds when URLVar returns, as SecretVar's
// does.
func URLVar(fs *flag.FlagSet, p *URL, name, value, usage string) {
	*p = URL{v: new(string)}
	fs.StringVar(p.v, name, value, usage)
	fs.Lookup(name).DefValue = RedactURL(value)
}
