// fly-client drives Fly.io's own Go client (github.com/superfly/fly-go's flaps package, as flyctl uses it)
// through one Machine's life against the Machines API at FLY_FLAPS_BASE_URL: create an app, set a secret,
// create a volume, launch a Machine on it, get, list, stop and destroy it, then delete the volume. It prints
// one JSON object per step ({"step", "ok", "error", "result"}) for tests/contract/test_fly_contract.py.
//
//	FLY_FLAPS_BASE_URL=http://127.0.0.1:PORT FLY_API_TOKEN=... fly-client <app> <org> <region>
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	fly "github.com/superfly/fly-go"
	"github.com/superfly/fly-go/flaps"
	"github.com/superfly/fly-go/tokens"
)

func report(step string, result any, err error) bool {
	out := map[string]any{"step": step, "ok": err == nil, "result": result}
	if err != nil {
		out["error"] = err.Error()
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
	return err == nil
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: fly-client <app> <org> <region>")
		os.Exit(2)
	}
	app, org, region := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := flaps.NewWithOptions(ctx, flaps.NewClientOpts{AppName: app, Tokens: tokens.Parse(os.Getenv("FLY_API_TOKEN"))})
	if !report("client", nil, err) {
		os.Exit(1)
	}
	if !report("create_app", nil, client.CreateApp(ctx, app, org)) {
		os.Exit(1)
	}
	secret, err := client.SetAppSecret(ctx, "LLAMA_API_KEY", "contract-bearer")
	report("set_secret", secret, err)
	secrets, err := client.ListAppSecrets(ctx, nil, false)
	report("list_secrets", secrets, err)
	size, encrypted := 1, true
	volume, err := client.CreateVolume(ctx, fly.CreateVolumeRequest{Name: "model", Region: region, SizeGb: &size, Encrypted: &encrypted})
	if !report("create_volume", volume, err) {
		os.Exit(1)
	}
	autostop := fly.MachineAutostopOff
	min := 1
	port443, port80 := 443, 80
	machine, err := client.Launch(ctx, fly.LaunchMachineInput{Name: app + "-llm", Region: region, Config: &fly.MachineConfig{
		Image:   "ghcr.io/ggml-org/llama.cpp:server-b6870",
		Env:     map[string]string{"LLAMA_ARG_ALIAS": "tinyllama-1.1b-chat", "LLAMA_CACHE": "/models"},
		Guest:   &fly.MachineGuest{CPUKind: "shared", CPUs: 2, MemoryMB: 2048},
		Mounts:  []fly.MachineMount{{Volume: volume.ID, Path: "/models"}},
		Restart: &fly.MachineRestart{Policy: fly.MachineRestartPolicyAlways},
		Services: []fly.MachineService{{Protocol: "tcp", InternalPort: 8080, Autostop: &autostop, MinMachinesRunning: &min,
			Ports: []fly.MachinePort{{Port: &port443, Handlers: []string{"tls", "http"}}, {Port: &port80, Handlers: []string{"http"}, ForceHTTPS: true}}}},
	}})
	if !report("launch", machine, err) {
		os.Exit(1)
	}
	got, err := client.Get(ctx, machine.ID)
	report("get", got, err)
	list, err := client.List(ctx, "")
	report("list", list, err)
	report("stop", nil, client.Stop(ctx, fly.StopMachineInput{ID: machine.ID}, ""))
	stopped, err := client.Get(ctx, machine.ID)
	report("get_stopped", stopped, err)
	report("destroy", nil, client.Destroy(ctx, fly.RemoveMachineInput{ID: machine.ID, Kill: true}, ""))
	_, err = client.DeleteVolume(ctx, volume.ID)
	report("delete_volume", nil, err)
	volumes, err := client.GetVolumes(ctx)
	report("volumes_after", volumes, err)
}
