package natsembed_test

import (
	"context"
	"fmt"
	"time"

	"github.com/taipattern/taikit/kanban/natsembed"
)

func Example() {
	srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	nc, err := srv.Connect()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	reply, _ := nc.Request("$JS.API.INFO", nil, 5*time.Second)
	fmt.Println("jetstream answers:", reply != nil)
	// Output: jetstream answers: true
}
