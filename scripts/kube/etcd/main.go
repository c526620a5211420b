// Command etcd is the etcd server for the test control plane (scripts/kube/build.sh). etcd's own main
// package lives in its root module, whose replace directives cannot be used from outside its repository,
// so this calls the same entry point from the published server module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
