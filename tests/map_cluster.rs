//! `cx-conductor map` against the real control plane: the map drawn from a namespace, with KPI
//! values, gaps and states and collector readiness taken from the resources' status, read by a
//! ServiceAccount that may only get and list the four kinds.

#[path = "support/cluster.rs"]
mod cluster_support;

use std::process::Command;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use cluster_support::{cluster, repo_path};
#[path = "support/prometheus.rs"]
mod prometheus_support;
#[path = "support/svg_text.rs"]
mod svg_text;
use cx_conductor::api::{ExperienceKPI, Touchpoint};
use svg_text::texts;

fn condition(type_: &str, status: &str) -> serde_json::Value {
    json!({
        "type": type_,
        "status": status,
        "reason": if status == "True" { "CollectorReady" } else { "ReplicasUnavailable" },
        "message": "set by the map test",
        "lastTransitionTime": "2026-12-01T10:00:00Z",
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_map_of_a_namespace_shows_kpi_states_and_collector_readiness_from_status() {
    let cluster = cluster();
    cluster.install_crds();
    let ns = cluster.namespace("map").await;

    // examples/retail in a namespace of its own.
    let dir = std::env::temp_dir().join(format!("cx-map-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in [
        "channels.yaml",
        "touchpoints.yaml",
        "kpis.yaml",
        "journey.yaml",
    ] {
        let text = std::fs::read_to_string(repo_path(&format!("examples/retail/{file}")))
            .unwrap()
            .replace("namespace: retail", &format!("namespace: {ns}"))
            .replace("namespace=\"retail\"", &format!("namespace=\"{ns}\""));
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        cluster.kubectl_ok(&["apply", "--server-side", "-f", path.to_str().unwrap()]);
    }

    // Statuses as the operator would write them: one KPI at risk, one breached, one met; one
    // collector ready, one not.
    let admin = cluster.admin();
    let kpis: Api<ExperienceKPI> = Api::namespaced(admin.clone(), &ns);
    let touchpoints: Api<Touchpoint> = Api::namespaced(admin.clone(), &ns);
    let status = |value: serde_json::Value| Patch::Merge(json!({ "status": value }));
    for (name, value) in [
        (
            "checkout-csat",
            json!({"value": 82.5, "gap": -2.5, "samples": 340, "state": "AtRisk"}),
        ),
        (
            "support-fcr",
            json!({"value": 52, "gap": -18, "samples": 1200, "state": "Breached"}),
        ),
        (
            "relationship-nps",
            json!({"value": 44, "gap": 4, "samples": 800, "state": "Met"}),
        ),
    ] {
        kpis.patch_status(name, &PatchParams::default(), &status(value))
            .await
            .unwrap_or_else(|e| panic!("status of {name}: {e}"));
    }
    touchpoints
        .patch_status(
            "web-checkout",
            &PatchParams::default(),
            &status(json!({
                "collector": {"readyReplicas": 2, "replicas": 2},
                "conditions": [condition("Ready", "True")],
            })),
        )
        .await
        .unwrap();
    touchpoints
        .patch_status(
            "chat-support",
            &PatchParams::default(),
            &status(json!({
                "collector": {"readyReplicas": 0, "replicas": 1},
                "conditions": [condition("Ready", "False")],
            })),
        )
        .await
        .unwrap();

    // A reader that may only get and list the four kinds.
    let rbac = dir.join("reader.yaml");
    std::fs::write(
        &rbac,
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{ name: map-reader, namespace: {ns} }}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{ name: map-reader, namespace: {ns} }}\nrules:\n- apiGroups: [cx.conductor.dev]\n  resources: [channels, touchpoints, experiencekpis, customerjourneys]\n  verbs: [get, list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{ name: map-reader, namespace: {ns} }}\nroleRef: {{ apiGroup: rbac.authorization.k8s.io, kind: Role, name: map-reader }}\nsubjects:\n- {{ kind: ServiceAccount, name: map-reader, namespace: {ns} }}\n"
        ),
    )
    .unwrap();
    cluster.kubectl_ok(&["apply", "--server-side", "-f", rbac.to_str().unwrap()]);
    let token = cluster.service_account_token(&ns, "map-reader").await;
    let kubeconfig = cluster.kubeconfig_for(&cluster.server, &token, "map-reader");

    // `cx-conductor map` of the namespace as the reader, with `extra` arguments, to `output`.
    let map_of_namespace = |extra: &[&str], output: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
            .args(["map", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["-n", &ns])
            .args(extra)
            .arg("-o")
            .arg(output)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let page = dir.join("live.html");
    let out = map_of_namespace(&[], &page);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The journey is not ready (KPIs not met, collectors not ready): that is drawn, not an error.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr,
        format!("map of 1 journey written to {}\n", page.display())
    );
    let shown = texts(&std::fs::read_to_string(&page).unwrap());
    let has = |wanted: &str| shown.iter().any(|t| t == wanted);
    assert!(
        has(&format!(
            "source: cluster context c ({}/), namespace {ns}",
            cluster.server
        )),
        "{shown:?}"
    );
    assert!(has(&format!("Journey {ns}/retail")), "{shown:?}");
    assert!(
        has(
            "KPIs: 1 Met, 1 AtRisk, 1 Breached, 0 InsufficientData, 12 Unknown · collectors ready: 1 of 15"
        ),
        "{shown:?}"
    );
    assert!(has("AtRisk 82.5 gap -2.5 n=340"), "{shown:?}");
    assert!(has("Breached 52 gap -18 n=1200"), "{shown:?}");
    assert!(has("Met 44 gap +4 n=800"), "{shown:?}");
    assert!(has("collector ready 2/2"), "{shown:?}");
    assert!(has("collector NOT ready 0/1"), "{shown:?}");
    // Touchpoints with no status yet: not ready, with their desired replicas.
    assert_eq!(
        shown
            .iter()
            .filter(|t| t.starts_with("collector NOT ready"))
            .count(),
        14,
        "{shown:?}"
    );
    assert!(
        !shown.iter().any(|t| t.contains("not evaluated offline")),
        "statuses are known from a cluster"
    );
    // What the statuses contradict is listed: the declared "customers are listened to" (9) and
    // "seamless experience" (15) answers, now that collectors and KPIs are known not to be.
    assert!(has("0 errors, 2 warnings, listed on the map"), "{shown:?}");
    let contradicted: Vec<&String> = shown
        .iter()
        .filter(|t| t.starts_with("warning[self-assessment-contradicted]: question "))
        .collect();
    assert_eq!(contradicted.len(), 2, "{shown:?}");
    assert!(contradicted[0].starts_with("warning[self-assessment-contradicted]: question 9 "));
    assert!(contradicted[1].starts_with("warning[self-assessment-contradicted]: question 15 "));
    // Twelve KPIs were never evaluated: unknown.
    assert_eq!(
        shown.iter().filter(|t| t.as_str() == "Unknown").count(),
        12,
        "{shown:?}"
    );

    // Every namespace, as the admin: this namespace's journey is among them.
    let admin_config = cluster.kubeconfig_for(&cluster.server, &cluster.admin_token, "map-admin");
    let everything = dir.join("all.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(["map", "-A", "--kubeconfig"])
        .arg(&admin_config)
        .arg("-o")
        .arg(&everything)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = texts(&std::fs::read_to_string(&everything).unwrap());
    assert!(
        all.iter()
            .any(|t| t.starts_with("source: cluster context c (")
                && t.ends_with("), all namespaces")),
        "{all:?}"
    );
    assert!(all.contains(&format!("Journey {ns}/retail")));

    // With the Prometheus that scrapes the collectors: each stage's top themes and their share
    // of its comments over the window. Two hours of the collectors' comment and theme counters,
    // backfilled (web-checkout, purchase: 20 comments, 8 on delivery and 5 on price;
    // app-delivery-tracking, delivery: 6 comments, 3 on app crashes), and another namespace's
    // same-named touchpoint that must count nowhere here.
    if let (Some(prometheus), Some(promtool)) = (
        prometheus_support::prometheus_binary(),
        prometheus_support::promtool_binary(),
    ) {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let mut history = String::from(
            "# TYPE cx_feedback_comments counter\n# TYPE cx_feedback_themes counter\n",
        );
        let series = [
            (
                "cx_feedback_comments_total",
                ns.as_str(),
                "web-checkout",
                "",
                20,
            ),
            (
                "cx_feedback_comments_total",
                ns.as_str(),
                "app-delivery-tracking",
                "",
                6,
            ),
            (
                "cx_feedback_comments_total",
                "elsewhere",
                "web-checkout",
                "",
                100,
            ),
            (
                "cx_feedback_themes_total",
                ns.as_str(),
                "web-checkout",
                "delivery",
                8,
            ),
            (
                "cx_feedback_themes_total",
                ns.as_str(),
                "web-checkout",
                "price",
                5,
            ),
            (
                "cx_feedback_themes_total",
                ns.as_str(),
                "app-delivery-tracking",
                "app-crashes",
                3,
            ),
            (
                "cx_feedback_themes_total",
                "elsewhere",
                "web-checkout",
                "staff",
                90,
            ),
        ];
        let mut lines: Vec<(i64, String)> = Vec::new();
        for (metric, namespace, touchpoint, theme, last) in series {
            let theme = if theme.is_empty() {
                String::new()
            } else {
                format!(r#",theme="{theme}""#)
            };
            // A sample a minute, from zero two hours ago to `last` ten minutes ago.
            for minute in 0..=110_i64 {
                let value = last * minute / 110;
                lines.push((
                    now - 7200 + 60 * minute,
                    format!(
                        r#"{metric}{{namespace="{namespace}",touchpoint="{touchpoint}",metric="nps",segment="detractor"{theme}}} {value} "#
                    ),
                ));
            }
        }
        // OpenMetrics wants each family's samples together; within a series, in time order.
        let mut families: Vec<&(i64, String)> = lines.iter().collect();
        families.sort_by_key(|(t, line)| (!line.starts_with("cx_feedback_comments"), *t));
        for (t, line) in families {
            history.push_str(&format!("{line}{t}\n"));
        }
        history.push_str("# EOF\n");
        std::fs::write(dir.join("themes.om"), history).unwrap();
        let server = prometheus_support::Prometheus::start_on_history(prometheus, |data| {
            let out = Command::new(&promtool)
                .args(["tsdb", "create-blocks-from", "openmetrics", "themes.om"])
                .arg(data)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
        .await;
        let themed = dir.join("themes.svg");
        let out = map_of_namespace(
            &["--prometheus-url", &server.url, "--themes-window", "1d"],
            &themed,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("warning"), "{stderr}");
        let shown = texts(&std::fs::read_to_string(&themed).unwrap());
        for expected in [
            "Themes",
            "top themes, share of comments, last 1d",
            "delivery 40%",
            "price 25%",
            "of 20 comments",
            "app-crashes 50%",
            "of 6 comments",
        ] {
            assert!(shown.iter().any(|t| t == expected), "{expected}: {shown:?}");
        }
        assert!(
            !shown.iter().any(|t| t.starts_with("staff")),
            "another namespace's mentions: {shown:?}"
        );
        // Prometheus unreachable: the map is still drawn, the themes row left out and said so.
        drop(server);
        let out = map_of_namespace(&["--prometheus-url", "http://127.0.0.1:9"], &themed);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.starts_with("warning: themes not shown: "),
            "{stderr}"
        );
        let shown = texts(&std::fs::read_to_string(&themed).unwrap());
        assert!(!shown.iter().any(|t| t == "Themes"), "{shown:?}");
        assert!(shown.contains(&format!("Journey {ns}/retail")), "{shown:?}");
    }

    // The live map in a real browser: no text leaves its box.
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.is_file() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(
            !ci,
            "`chromium` is not installed and CI is set (scripts/test.sh installs it)"
        );
        eprintln!(
            "!!! SKIPPED: `chromium` is not installed, the live map was not laid out in a browser"
        );
        return;
    }
    let out = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let body = &dom[dom.find("<body").expect("a body")..];
    let body = &body[..body.find('>').unwrap()];
    assert!(body.contains(r#"data-overflow="0""#), "{body}");
    assert!(!body.contains(r#"data-checked="0""#), "{body}");
}
