// Package natsembed runs a NATS server with JetStream inside the process:
// the zero-setup default of the example services and the server the
// kanban/natsjs tests run against.
//
//	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir})
//	if err != nil { ... }
//	defer srv.Shutdown(context.Background())
//	nc, err := srv.Connect()
//
// The server listens on a free loopback port (or a fixed Port), or, with
// InProcess, on no port at all: clients then connect through Connect,
// which dials the server in memory. On a port it is secure by default:
// clients must present a token, generated at random unless Options.Token
// sets one, which ClientURL carries and Connect presents (NoAuth turns it
// off); a token may hold any character (see Options.Token), as the URL
// percent-encodes it and Connect presents it outside the URL. It logs
// nothing unless given a Logger.
//
// Starting again on the same StoreDir (and Port, and Token) brings back
// the streams and messages a previous server stored, which is how a crash
// and restart are tested. A client of a server on a port reconnects to the
// one started again there; a client of an InProcess server is tied to that
// server and cannot reconnect to another: connect anew with the new
// server's Connect. A server holds a lock on its StoreDir until
// Shutdown: a second server on the same StoreDir, in this process or
// another, fails to start (ErrStoreInUse) instead of corrupting the store.
// A Port in use fails Start at once, naming the address.
//
// JetStream keeps no more messages than Options.MaxMemory bytes in memory
// and Options.MaxStore bytes in the StoreDir, and refuses writes past
// them with an "insufficient resources" error. Left at 0 they are the
// server's own defaults, 75% of the machine's memory and of the disk
// space free at start: a service that shares its machine sets them.
package natsembed
