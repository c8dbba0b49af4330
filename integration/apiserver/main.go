// Command nftpol-apiserver is the test cluster's control plane: an embedded
// etcd and the genuine kube-apiserver (k8s.io/kubernetes/cmd/kube-apiserver)
// in one process, so nftpol's tests talk to the real API server (TLS,
// ServiceAccount tokens, RBAC, the watch cache, CRD discovery, server-side
// validation) without a container runtime or a second binary.
//
// Usage:
//
//	nftpol-apiserver certs DIR IP...
//	nftpol-apiserver serve --etcd-dir DIR [--etcd-port N] [--compact-on-start] -- KUBE-APISERVER-FLAGS...
//
// certs writes a fresh test PKI into DIR (see certs.go): ca.crt, a serving
// certificate server.crt/server.key for the given IP addresses, and the
// ServiceAccount token signing key sa.key.
//
// etcd listens on 127.0.0.1 only (the test runs the process inside its own
// network namespace); point kube-apiserver at it with
// --etcd-servers=http://127.0.0.1:N. --compact-on-start compacts etcd to its
// current revision before kube-apiserver starts, so a client that resumes a
// watch from a resourceVersion seen before a restart gets 410 Gone: the
// tests use it to prove the agent relists without a gap in enforcement.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as cmd/kube-apiserver: JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as cmd/kube-apiserver: client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // as cmd/kube-apiserver: version metric
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	if len(os.Args) >= 3 && os.Args[1] == "certs" {
		if err := writeCerts(os.Args[2], os.Args[3:]); err != nil {
			fmt.Fprintf(os.Stderr, "nftpol-apiserver certs: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: nftpol-apiserver certs DIR IP... | serve --etcd-dir DIR [--etcd-port N] [--compact-on-start] -- KUBE-APISERVER-FLAGS...")
		os.Exit(2)
	}
	flags := flag.NewFlagSet("nftpol-apiserver serve", flag.ExitOnError)
	etcdDir := flags.String("etcd-dir", "", "etcd data directory (kept across restarts)")
	etcdPort := flags.Int("etcd-port", 2379, "etcd client port on 127.0.0.1 (peer port is the next one)")
	compact := flags.Bool("compact-on-start", false, "compact etcd to its current revision before kube-apiserver starts")
	// Parse stops at "--"; everything after it belongs to kube-apiserver.
	if err := flags.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if *etcdDir == "" {
		fmt.Fprintln(os.Stderr, "nftpol-apiserver: --etcd-dir is required")
		os.Exit(2)
	}

	etcd, err := startEtcd(*etcdDir, *etcdPort)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nftpol-apiserver: etcd: %v\n", err)
		os.Exit(1)
	}
	if *compact {
		if err := compactAll(etcd); err != nil {
			fmt.Fprintf(os.Stderr, "nftpol-apiserver: etcd compaction: %v\n", err)
			etcd.Close()
			os.Exit(1)
		}
	}

	command := app.NewAPIServerCommand()
	command.SetArgs(flags.Args())
	code := cli.Run(command)
	etcd.Close()
	os.Exit(code)
}

// startEtcd runs a single-member etcd on 127.0.0.1 and waits until it serves.
func startEtcd(dir string, port int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	// etcd logs every request at info; the tests read kube-apiserver's log.
	cfg.LogLevel = "error"
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port+1)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-etcd.Server.ReadyNotify():
		return etcd, nil
	case err := <-etcd.Err():
		etcd.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		etcd.Close()
		return nil, fmt.Errorf("not ready after 60 s")
	}
}

// compactAll compacts the key space to the current revision, so every older
// resourceVersion is gone.
func compactAll(etcd *embed.Etcd) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	revision := etcd.Server.KV().Rev()
	_, err := etcd.Server.Compact(ctx, &pb.CompactionRequest{Revision: revision, Physical: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "nftpol-apiserver: etcd compacted to revision %d\n", revision)
	return nil
}
