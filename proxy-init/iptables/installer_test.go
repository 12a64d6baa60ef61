package iptables

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDetectMode(t *testing.T) {
	rules := func(n int) string {
		return "*filter\n:INPUT ACCEPT [0:0]\n" + strings.Repeat("-A INPUT -j ACCEPT\n", n) + "COMMIT\n"
	}
	for _, tc := range []struct {
		name    string
		outputs map[string]string
		errors  map[string]error
		want    Mode
	}{
		{"neither has rules", nil, nil, ModeNFT},
		{"legacy has more rules", map[string]string{"iptables-legacy-save": rules(3), "iptables-nft-save": rules(1)}, nil, ModeLegacy},
		{"ip6tables counts too", map[string]string{"ip6tables-legacy-save": rules(2), "iptables-nft-save": rules(1)}, nil, ModeLegacy},
		{"nft has more rules", map[string]string{"iptables-legacy-save": rules(1), "iptables-nft-save": rules(3)}, nil, ModeNFT},
		{"a tie is nft", map[string]string{"iptables-legacy-save": rules(2), "iptables-nft-save": rules(2)}, nil, ModeNFT},
		{"legacy binaries missing", map[string]string{"iptables-nft-save": rules(1)}, map[string]error{"iptables-legacy-save": errors.New("not found")}, ModeNFT},
		{"kubelet's hint in legacy wins over rule counts",
			map[string]string{"iptables-legacy-save": "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n", "iptables-nft-save": rules(5)}, nil, ModeLegacy},
		{"kubelet's hint in nft",
			map[string]string{"iptables-nft-save": "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n", "iptables-legacy-save": rules(5)}, nil, ModeNFT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runner := &FakeRunner{Outputs: tc.outputs, Errors: tc.errors}
			if got := DetectMode(context.Background(), runner); got != tc.want {
				t.Errorf("DetectMode() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPlanInstallAndExecute(t *testing.T) {
	runner := &FakeRunner{}
	in := Installer{Runner: runner, Mode: ModeLegacy, Families: []Family{IPv4, IPv6}, WaitSeconds: 5}
	steps, err := in.PlanInstall(context.Background(), defaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Execute(context.Background(), steps); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range runner.Calls() {
		got = append(got, c.String())
	}
	want := []string{
		"iptables-legacy-save -t nat",
		"ip6tables-legacy-save -t nat",
		"iptables-legacy-restore --noflush -w 5",
		"ip6tables-legacy-restore --noflush -w 5",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

func TestExecuteRollsBackEarlierFamiliesWhenOneFails(t *testing.T) {
	before := "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -j RETURN\nCOMMIT\n"
	runner := &FakeRunner{
		Outputs: map[string]string{"iptables-nft-save": before},
		Errors:  map[string]error{"ip6tables-nft-restore": errors.New("line 5 failed")},
	}
	in := Installer{Runner: runner, Mode: ModeNFT, Families: []Family{IPv4, IPv6}}
	steps, err := in.PlanInstall(context.Background(), defaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	err = in.Execute(context.Background(), steps)
	if err == nil || !strings.Contains(err.Error(), "line 5 failed") {
		t.Fatalf("Execute() error = %v, want the ip6tables failure", err)
	}
	restores := runner.Restores()
	if len(restores) != 3 {
		t.Fatalf("restores = %v, want install v4, install v6 (failing), roll back v4", restores)
	}
	rollBack := restores[2]
	if rollBack.String() != "iptables-nft-restore" || rollBack.Stdin != before {
		t.Errorf("roll back = %s with input\n%s\nwant iptables-nft-restore (flushing, no --noflush) with the table as it was", rollBack, rollBack.Stdin)
	}
}

func TestExecuteRollsBackToAnEmptyTable(t *testing.T) {
	runner := &FakeRunner{Errors: map[string]error{"ip6tables-nft-restore": errors.New("boom")}}
	in := Installer{Runner: runner, Mode: ModeNFT, Families: []Family{IPv4, IPv6}}
	steps, _ := in.PlanInstall(context.Background(), defaultConfig)
	if err := in.Execute(context.Background(), steps); err == nil {
		t.Fatal("Execute() succeeded, want the ip6tables failure")
	}
	restores := runner.Restores()
	if last := restores[len(restores)-1]; last.Stdin != emptyNATInput {
		t.Errorf("rolled back with\n%s\nwant an empty nat table", last.Stdin)
	}
}

func TestPlanInstallWhenTheTableCannotBeRead(t *testing.T) {
	runner := &FakeRunner{Errors: map[string]error{"iptables-nft-save": errors.New("permission denied")}}
	in := Installer{Runner: runner, Mode: ModeNFT, Families: []Family{IPv4}}
	if _, err := in.PlanInstall(context.Background(), defaultConfig); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("PlanInstall() error = %v, want the save failure", err)
	}
	in.AssumeEmpty = true
	steps, err := in.PlanInstall(context.Background(), defaultConfig)
	if err != nil || len(steps) != 1 || !strings.Contains(steps[0].Input, "-A PREROUTING") {
		t.Errorf("PlanInstall(AssumeEmpty) = %v, %v; want a plan for an empty table", steps, err)
	}
}

func TestPlanCleanupSkipsFamiliesWithNothingOfOurs(t *testing.T) {
	runner := &FakeRunner{Outputs: map[string]string{"iptables-nft-save": saveWithOurRules, "ip6tables-nft-save": "*nat\nCOMMIT\n"}}
	in := Installer{Runner: runner, Mode: ModeNFT, Families: []Family{IPv4, IPv6}}
	steps, err := in.PlanCleanup(context.Background())
	if err != nil || len(steps) != 1 || steps[0].Family != IPv4 {
		t.Errorf("PlanCleanup() = %+v, %v; want one IPv4 step", steps, err)
	}
}
