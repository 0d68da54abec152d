//! A collector with `collector.auth` must be able to read its token where the kubelet puts it.
//!
//! The kubelet writes a Secret volume's files root-owned with the volume's `defaultMode` (0440
//! here): only root and the file's group may read them. The collector runs as uid/gid 65532, not
//! root, so without `fsGroup` (which makes the kubelet give the volume that group) it could not
//! read its token and would crash-loop. This runs the real binary (`cx-conductor collector`) as
//! the planned user and group against a token file laid out both ways. Tests run as root, which
//! may switch to any user; running them as another user fails this test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cx_conductor::collector::config::CollectorConfig;
use cx_conductor::core::plan::{CollectorPlan, PlanOptions, plan_collector};
use cx_conductor::manifest::{Inventory, load_paths};
use cx_conductor::schema::SchemaValidator;

const TOKEN: &str = "s3cret-ingest-token";

/// The plan of the fixture touchpoint, which has `collector.auth`.
fn planned() -> CollectorPlan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan/checkout.yaml");
    let documents = load_paths(&[path]).unwrap();
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    assert!(inventory.rejected.is_empty(), "{:?}", inventory.rejected);
    let touchpoint = &inventory.touchpoints[0];
    assert!(
        touchpoint.spec.collector.auth.is_some(),
        "the fixture has auth"
    );
    plan_collector(
        touchpoint,
        inventory.channels.first(),
        &[],
        &PlanOptions::default(),
    )
}

/// The pod's user, group and fsGroup, and the token volume's mode, as planned.
struct PodIdentity {
    uid: u32,
    gid: u32,
    fs_group: u32,
    token_mode: u32,
}

fn pod_identity(plan: &CollectorPlan) -> PodIdentity {
    let pod = plan.deployment.spec.template.spec.as_ref().unwrap();
    let security = pod.security_context.as_ref().unwrap();
    let token = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "token")
        .expect("a token volume");
    let id = |v: Option<i64>, what: &str| {
        u32::try_from(v.unwrap_or_else(|| panic!("{what} is planned"))).unwrap()
    };
    PodIdentity {
        uid: id(security.run_as_user, "runAsUser"),
        gid: id(security.run_as_group, "runAsGroup"),
        fs_group: id(security.fs_group, "fsGroup"),
        token_mode: u32::try_from(token.secret.as_ref().unwrap().default_mode.unwrap()).unwrap(),
    }
}

#[test]
fn the_planned_pod_gives_the_token_volume_the_collectors_group() {
    let identity = pod_identity(&planned());
    assert_eq!(identity.uid, 65532);
    assert_eq!(identity.gid, 65532);
    assert_eq!(identity.fs_group, 65532, "fsGroup is the collector's group");
    assert_eq!(identity.token_mode, 0o440, "owner and group read only");
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|id| id == "0"))
        .unwrap_or(false)
}

/// A folder anyone may enter for the token, and the planned configuration pointing at it.
fn workspace(name: &str, plan: &CollectorPlan) -> (PathBuf, String, PathBuf) {
    let dir = std::env::temp_dir().join(format!("cx-token-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let token = dir.join("token");
    let mut config: CollectorConfig = serde_yaml::from_str(&plan.config).unwrap();
    config.auth.as_mut().expect("auth is configured").token_file = token.display().to_string();
    (dir, serde_json::to_string(&config).unwrap(), token)
}

/// Writes the token as the kubelet does: owned by root and `group`, with `mode`.
fn write_token(path: &Path, group: u32, mode: u32) {
    std::fs::write(path, format!("{TOKEN}\n")).unwrap();
    chown(path, Some(0), Some(group)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `cx-conductor collector --listen ADDR` with its configuration in `CX_COLLECTOR_CONFIG`, as
/// `uid`/`gid` (no other group): as the planned container runs it.
fn collector(config: &str, listen: SocketAddr, uid: u32, gid: u32) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cx-conductor"));
    command
        .arg("collector")
        .arg("--listen")
        .arg(listen.to_string())
        .env_clear()
        .env("CX_COLLECTOR_CONFIG", config)
        .env("RUST_LOG", "info")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null());
    command
}

/// One HTTP/1.1 exchange; the status code and body.
fn http(addr: SocketAddr, request: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn post_event(addr: SocketAddr, token: Option<&str>) -> Option<(u16, String)> {
    let body = r#"{"type":"survey","metric":"nps","score":9}"#;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    http(
        addr,
        &format!(
            "POST /v1/events HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn a_root_owned_0440_token_stops_the_collector_at_start_with_a_clear_message() {
    assert!(
        running_as_root(),
        "this test switches to the collector's user: run the tests as root"
    );
    let plan = planned();
    let identity = pod_identity(&plan);
    let (dir, config, token) = workspace("root-group", &plan);
    // No fsGroup: the kubelet leaves the Secret volume root:root.
    write_token(&token, 0, identity.token_mode);
    let output = collector(&config, free_port(), identity.uid, identity.gid)
        .output()
        .expect("the collector runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(2), "{text}");
    for needle in [
        "cannot start the collector",
        &format!(
            "cannot read the token file {} (owner 0, group 0, mode 0440): permission denied to uid 65532, gid 65532",
            token.display()
        ),
        "securityContext.fsGroup",
        "fsGroup 65532",
    ] {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn with_the_fs_group_the_collector_reads_its_token_and_takes_events() {
    assert!(
        running_as_root(),
        "this test switches to the collector's user: run the tests as root"
    );
    let plan = planned();
    let identity = pod_identity(&plan);
    let (dir, config, token) = workspace("fs-group", &plan);
    // fsGroup: the kubelet gives the Secret volume the pod's fsGroup.
    write_token(&token, identity.fs_group, identity.token_mode);
    let addr = free_port();
    let mut child = collector(&config, addr, identity.uid, identity.gid)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the collector starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            panic!(
                "the collector exited ({status}):\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let probe = http(
            addr,
            "GET /readyz HTTP/1.1\r\nHost: collector\r\nConnection: close\r\n\r\n",
        );
        if probe.as_ref().is_some_and(|(status, _)| *status == 200) || Instant::now() > deadline {
            break probe;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let accepted = post_event(addr, Some(TOKEN));
    let anonymous = post_event(addr, None);
    let wrong = post_event(addr, Some("not-the-token"));
    child.kill().unwrap();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(ready.map(|(s, _)| s), Some(200), "ready");
    assert_eq!(
        accepted.as_ref().map(|(s, _)| *s),
        Some(202),
        "{accepted:?}"
    );
    assert_eq!(
        anonymous.as_ref().map(|(s, _)| *s),
        Some(401),
        "{anonymous:?}"
    );
    assert_eq!(wrong.as_ref().map(|(s, _)| *s), Some(401), "{wrong:?}");
}

#[test]
fn an_unreadable_configuration_in_the_environment_is_named_and_stops_the_collector() {
    let output = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(["collector", "--listen", &free_port().to_string()])
        .env_clear()
        .env(
            "CX_COLLECTOR_CONFIG",
            "{\"namespace\": \"shop\", \"touchpoint\": ",
        )
        .output()
        .expect("the collector runs");
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("CX_COLLECTOR_CONFIG"), "{text}");
    // Without a file or the variable there is nothing to serve.
    let output = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(["collector", "--listen", &free_port().to_string()])
        .env_clear()
        .output()
        .expect("the collector runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--config"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
