package terraform

import (
	"maps"
	"slices"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The database of the replica tests: the secret with its URL and a Cloud SQL
// instance's connection name.
const (
	testDatabaseSecret = "deployhook-database-url"
	testCloudSQL       = "my-project:us-central1:journal"
)

// moduleVars returns the module's required variables for runtime cloud_run,
// with extra set over them.
func moduleVars(extra map[string]cty.Value) map[string]cty.Value {
	v := map[string]cty.Value{
		"project_id":        cty.StringVal("my-project"),
		"github_repository": cty.StringVal("acme/pipelines"),
		"runtime":           cty.StringVal("cloud_run"),
		"image":             cty.StringVal("us-docker.pkg.dev/my-project/deployhook/deployhook:v1.0.0"),
		"config_yaml":       cty.StringVal("public_url: https://deployhook.example\n"),
		"vm": cty.ObjectVal(map[string]cty.Value{
			"name":                  cty.StringVal("dagster"),
			"zone":                  cty.StringVal("us-central1-a"),
			"network":               cty.StringVal("default"),
			"tag":                   cty.StringVal("deployhook-ssh"),
			"service_account_email": cty.NullVal(cty.String),
		}),
	}
	maps.Copy(v, extra)
	return v
}

// postgresVars returns the variables of n replicas on the Cloud SQL instance.
func postgresVars(n int64) map[string]cty.Value {
	return map[string]cty.Value{
		"database_url_secret_id": cty.StringVal(testDatabaseSecret),
		"cloud_sql_instance":     cty.StringVal(testCloudSQL),
		"replicas":               cty.NumberIntVal(n),
	}
}

// journalPlan is what the module makes for the journal, as a plan shows it.
type journalPlan struct {
	service, bucket, bucketIAM int
	volumes                    []string // the Cloud Run volumes' names
	mounts                     []string // the container's mount paths
	args                       []string
	databaseEnv                string // the secret of DEPLOYHOOK_DATABASE_URL; "" when not set
	startup, liveness          string // the probes' paths
	secretGrants               []string
	cloudSQLClient             int
	apis                       []string
}

func planJournal(t *testing.T, s *scope) journalPlan {
	t.Helper()
	p := journalPlan{
		service:        s.count(t, "google_cloud_run_v2_service.deployhook"),
		bucket:         s.count(t, "google_storage_bucket.data"),
		bucketIAM:      s.count(t, "google_storage_bucket_iam_member.data"),
		secretGrants:   slices.Sorted(slices.Values(s.keys(t, "google_secret_manager_secret_iam_member.external"))),
		cloudSQLClient: s.count(t, "google_project_iam_member.cloudsql_client"),
		apis:           slices.Sorted(slices.Values(stringsOf(t, "apis", s.local(t, "apis")))),
	}
	if p.service == 0 {
		return p
	}
	tmpl := s.resource(t, "google_cloud_run_v2_service.deployhook").one(t, "template")
	for _, v := range tmpl.blocks(t, "volumes") {
		p.volumes = append(p.volumes, v.str(t, "name"))
	}
	c := tmpl.one(t, "containers")
	for _, m := range c.blocks(t, "volume_mounts") {
		p.mounts = append(p.mounts, m.str(t, "mount_path"))
	}
	p.args = stringsOf(t, "args", c.eval(t, "args"))
	for _, e := range c.blocks(t, "env") {
		if e.str(t, "name") == "DEPLOYHOOK_DATABASE_URL" {
			p.databaseEnv = e.one(t, "value_source").one(t, "secret_key_ref").str(t, "secret")
		}
	}
	p.startup = c.one(t, "startup_probe").one(t, "http_get").str(t, "path")
	p.liveness = c.one(t, "liveness_probe").one(t, "http_get").str(t, "path")
	return p
}

// TestModule_Journal checks what the module makes for each journal: without a
// database exactly what it made before replicas (one instance, the bucket on
// /data); with one, no bucket and no data volume, DEPLOYHOOK_DATABASE_URL from
// the secret deployhook may read, the Cloud SQL socket and its role when a
// Cloud SQL instance is named, and /readyz as the startup probe.
func TestModule_Journal(t *testing.T) {
	m := readModule(t, moduleDir)
	base := []string{"serve", "--config", "/etc/deployhook/config.yaml", "--listen", "0.0.0.0:8080"}
	core := []string{"compute.googleapis.com", "iam.googleapis.com", "iap.googleapis.com", "secretmanager.googleapis.com"}
	apis := func(extra ...string) []string {
		return slices.Sorted(slices.Values(append(slices.Clone(core), extra...)))
	}
	tests := []struct {
		name string
		vars map[string]cty.Value
		want journalPlan
	}{
		{
			name: "sqlite",
			want: journalPlan{
				service: 1, bucket: 1, bucketIAM: 1,
				volumes: []string{"config", "data"}, mounts: []string{"/etc/deployhook", "/data"},
				args:    append(slices.Clone(base), "--data-dir", "/data"),
				startup: "/healthz", liveness: "/healthz",
				apis: apis("run.googleapis.com", "storage.googleapis.com"),
			},
		},
		{
			name: "cloud sql",
			vars: postgresVars(2),
			want: journalPlan{
				service: 1,
				volumes: []string{"config", "cloudsql"}, mounts: []string{"/etc/deployhook", "/cloudsql"},
				args: base, databaseEnv: testDatabaseSecret,
				startup: "/readyz", liveness: "/healthz",
				secretGrants: []string{"database_url"}, cloudSQLClient: 1,
				apis: apis("run.googleapis.com", "sqladmin.googleapis.com"),
			},
		},
		{
			name: "database by address",
			vars: map[string]cty.Value{"database_url_secret_id": cty.StringVal(testDatabaseSecret), "replicas": cty.NumberIntVal(2)},
			want: journalPlan{
				service: 1,
				volumes: []string{"config"}, mounts: []string{"/etc/deployhook"},
				args: base, databaseEnv: testDatabaseSecret,
				startup: "/readyz", liveness: "/healthz",
				secretGrants: []string{"database_url"},
				apis:         apis("run.googleapis.com"),
			},
		},
		{
			name: "runtime none with cloud sql",
			vars: map[string]cty.Value{
				"runtime":                cty.StringVal("none"),
				"database_url_secret_id": cty.StringVal(testDatabaseSecret),
				"cloud_sql_instance":     cty.StringVal(testCloudSQL),
			},
			want: journalPlan{
				secretGrants: []string{"database_url"}, cloudSQLClient: 1,
				apis: apis("sqladmin.googleapis.com"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planJournal(t, m.plan(t, moduleVars(tt.vars)))
			if !journalPlanEqual(got, tt.want) {
				t.Errorf("plan:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func journalPlanEqual(a, b journalPlan) bool {
	return a.service == b.service && a.bucket == b.bucket && a.bucketIAM == b.bucketIAM &&
		slices.Equal(a.volumes, b.volumes) && slices.Equal(a.mounts, b.mounts) && slices.Equal(a.args, b.args) &&
		a.databaseEnv == b.databaseEnv && a.startup == b.startup && a.liveness == b.liveness &&
		slices.Equal(a.secretGrants, b.secretGrants) && a.cloudSQLClient == b.cloudSQLClient && slices.Equal(a.apis, b.apis)
}

// TestModule_CloudSQL checks the Cloud SQL connection: the volume mounts the
// named instance, and deployhook's service account may connect to that
// instance alone, in the instance's own project (domain-scoped ones included).
func TestModule_CloudSQL(t *testing.T) {
	m := readModule(t, moduleDir)
	tests := []struct {
		instance, project, condition string
	}{
		{testCloudSQL, "my-project",
			"resource.name == 'projects/my-project/instances/journal' && resource.type == 'sqladmin.googleapis.com/Instance'"},
		{"example.com:db-project:europe-west1:deployhook-journal", "example.com:db-project",
			"resource.name == 'projects/example.com:db-project/instances/deployhook-journal' && resource.type == 'sqladmin.googleapis.com/Instance'"},
	}
	for _, tt := range tests {
		t.Run(tt.instance, func(t *testing.T) {
			vars := postgresVars(2)
			vars["cloud_sql_instance"] = cty.StringVal(tt.instance)
			s := m.plan(t, moduleVars(vars))

			g := s.resource(t, "google_project_iam_member.cloudsql_client")
			if got := g.str(t, "role"); got != "roles/cloudsql.client" {
				t.Errorf("role = %q, want roles/cloudsql.client", got)
			}
			if got := g.str(t, "project"); got != tt.project {
				t.Errorf("project = %q, want %q", got, tt.project)
			}
			if got := g.one(t, "condition").str(t, "expression"); got != tt.condition {
				t.Errorf("condition = %q, want %q", got, tt.condition)
			}
			if refs := hclsyntax.Variables(g.body.Attributes["member"].Expr); len(refs) != 1 || traversalString(refs[0]) != "google_service_account.deployhook.member" {
				t.Errorf("the role is not granted to deployhook's service account")
			}

			tmpl := s.resource(t, "google_cloud_run_v2_service.deployhook").one(t, "template")
			var instances []string
			for _, v := range tmpl.blocks(t, "volumes") {
				for _, c := range v.blocks(t, "cloud_sql_instance") {
					instances = append(instances, stringsOf(t, "instances", c.eval(t, "instances"))...)
				}
			}
			if !slices.Equal(instances, []string{tt.instance}) {
				t.Errorf("Cloud SQL volumes mount %q, want [%s]", instances, tt.instance)
			}
		})
	}
}

// TestModule_Preconditions checks the rules that join variables: more than one
// instance needs the database and runtime cloud_run, and a Cloud SQL instance
// needs the database's URL.
func TestModule_Preconditions(t *testing.T) {
	m := readModule(t, moduleDir)
	const (
		needDatabase = "replicas above 1 needs database_url_secret_id (a PostgreSQL journal): the SQLite journal allows one writer, and two instances would each keep their own and deploy twice."
		needCloudRun = "replicas sets the Cloud Run service's instances (runtime cloud_run): with runtime none, start the replicas yourself."
		needURL      = "cloud_sql_instance needs database_url_secret_id, the secret holding the URL deployhook connects to it with."
	)
	db := cty.StringVal(testDatabaseSecret)
	tests := []struct {
		name string
		vars map[string]cty.Value
		want []string
	}{
		{"sqlite, one instance", nil, nil},
		{"sqlite, two instances", map[string]cty.Value{"replicas": cty.NumberIntVal(2)}, []string{needDatabase}},
		{"postgres, three instances", postgresVars(3), nil},
		{"postgres, runtime none, two", map[string]cty.Value{"runtime": cty.StringVal("none"), "database_url_secret_id": db, "replicas": cty.NumberIntVal(2)}, []string{needCloudRun}},
		{"cloud sql without the URL", map[string]cty.Value{"cloud_sql_instance": cty.StringVal(testCloudSQL)}, []string{needURL}},
		{"runtime none, two, nothing else", map[string]cty.Value{"runtime": cty.StringVal("none"), "replicas": cty.NumberIntVal(2)}, []string{needDatabase, needCloudRun}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := m.plan(t, moduleVars(tt.vars))
			got := s.failedPreconditions(t, "google_service_account.deployhook", "google_cloud_run_v2_service.deployhook")
			if !slices.Equal(got, tt.want) {
				t.Errorf("failed preconditions %q, want %q", got, tt.want)
			}
		})
	}
}

// TestModule_ValidateReplicaVariables checks the validations of the variables
// replicas and cloud_sql_instance on their own.
func TestModule_ValidateReplicaVariables(t *testing.T) {
	m := readModule(t, moduleDir)
	tests := []struct {
		variable string
		value    cty.Value
		want     bool
	}{
		{"replicas", cty.NumberIntVal(1), true},
		{"replicas", cty.NumberIntVal(3), true},
		{"replicas", cty.NumberIntVal(10), true},
		{"replicas", cty.NumberIntVal(0), false},
		{"replicas", cty.NumberIntVal(11), false},
		{"replicas", cty.NumberFloatVal(1.5), false},
		{"cloud_sql_instance", cty.NullVal(cty.String), true},
		{"cloud_sql_instance", cty.StringVal(testCloudSQL), true},
		{"cloud_sql_instance", cty.StringVal("example.com:my-project:us-central1:journal"), true},
		{"cloud_sql_instance", cty.StringVal("journal"), false},
		{"cloud_sql_instance", cty.StringVal("my-project:us-central1-a:journal"), false},
		{"cloud_sql_instance", cty.StringVal("my-project/us-central1/journal"), false},
		{"cloud_sql_instance", cty.StringVal("projects/my-project/instances/journal"), false},
	}
	for _, tt := range tests {
		if got := m.valid(t, tt.variable, tt.value); got != tt.want {
			t.Errorf("%s = %#v: valid %v, want %v", tt.variable, tt.value, got, tt.want)
		}
	}
}

// TestExample_Replicas checks that the example hands the replica variables to
// the module and writes replicas: true in the configuration exactly when it
// gives a database.
func TestExample_Replicas(t *testing.T) {
	ex := readModule(t, exampleDir)
	call := ex.modules["deployhook"].Body
	for _, n := range []string{"database_url_secret_id", "cloud_sql_instance", "replicas"} {
		a := call.Attributes[n]
		if a == nil {
			t.Errorf("the example does not set the module's %s", n)
			continue
		}
		if refs := hclsyntax.Variables(a.Expr); len(refs) != 1 || traversalString(refs[0]) != "var."+n {
			t.Errorf("the example sets the module's %s to something other than var.%s", n, n)
		}
	}
	args := call.Attributes["config_yaml"].Expr.(*hclsyntax.FunctionCallExpr).Args[1].(*hclsyntax.ObjectConsExpr)
	i := slices.IndexFunc(args.Items, func(it hclsyntax.ObjectConsItem) bool { return hcl.ExprAsKeyword(it.KeyExpr) == "replicas" })
	if i < 0 {
		t.Fatal("templatefile is not passed replicas")
	}
	required := map[string]cty.Value{
		"project_id": cty.StringVal("my-project"), "vm_name": cty.StringVal("dagster"),
		"vm_zone": cty.StringVal("us-central1-a"), "github_repository": cty.StringVal("acme/pipelines"),
		"image":                         cty.StringVal("us-docker.pkg.dev/my-project/deployhook/deployhook:v1.0.0"),
		"oauth_client_id":               cty.StringVal("Iv1.0123456789abcdef"),
		"oauth_client_secret_secret_id": cty.StringVal("deployhook-oauth-client-secret"),
	}
	for _, database := range []bool{false, true} {
		vars := maps.Clone(required)
		if database {
			vars["database_url_secret_id"] = cty.StringVal(testDatabaseSecret)
		}
		s := ex.plan(t, vars)
		got, diags := args.Items[i].ValueExpr.Value(s.ctx)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if !got.RawEquals(cty.BoolVal(database)) {
			t.Errorf("database %v: the template's replicas = %#v, want %v", database, got, database)
		}
	}
}
