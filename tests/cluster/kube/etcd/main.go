// Command etcd is etcd's own main, built from go.etcd.io/etcd/server at the version this
// module pins (the one k8s.io/kubernetes itself is tested with).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
