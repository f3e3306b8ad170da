//! Scenarios of host management (issue 15): one boot of a host whose VMs live on the
//! datastore, managed from outside through QEMU's `hostfwd` to the hypervisor's own
//! address: the HTTPS API (`mgmt-api`), `hvctl`, and the web client in headless Chromium
//! (`mgmt-browser`), then `shutdown` through the guest's power button. And evaluation mode
//! over four boots with QEMU's RTC moved (`mgmt-evaluation`).

use super::{linux_forbid, qemu_virt, write_vms};
use crate::build::workspace_root;
use crate::https::{Client, Reply};
use crate::qemu::{HostDisk, HostNic, LiveCtx, LiveStep, Scenario};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The administrator password the scenario installs.
const PASSWORD: &str = "correct horse battery staple";

/// What `make` needs (paths known when the scenario list is built) and what later live
/// steps need (the CA, the token).
struct Shared {
    /// The VM files (long names) to put on the datastore.
    vms: Vec<PathBuf>,
    /// The datastore image.
    disk: PathBuf,
    /// A VM file for `create` (images already on the datastore).
    create_file: PathBuf,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static CA: Mutex<Option<PathBuf>> = Mutex::new(None);
static TOKEN: Mutex<Option<String>> = Mutex::new(None);

fn shared() -> Result<&'static Shared, String> {
    SHARED
        .get()
        .ok_or_else(|| "mgmt scenario: paths not set".to_string())
}

/// A datastore disk of `size` bytes at `out` holding `vms`, with the scenario's password
/// and the defaults for everything else.
fn datastore(
    out: PathBuf,
    size: u64,
    vms: Vec<PathBuf>,
) -> Result<crate::datastore::Created, String> {
    crate::datastore::create(&crate::datastore::Spec {
        out,
        size,
        vms,
        images: Vec::new(),
        password: PASSWORD.into(),
        host_config: None,
        sans: Vec::new(),
        extra: Vec::new(),
    })
}

/// Writes the datastore disk: the two VM files with their kernel and initramfs, the
/// password, a certificate from a fresh CA.
fn make_disk() -> Result<PathBuf, String> {
    let s = shared()?;
    let created = datastore(s.disk.clone(), 192 << 20, s.vms.clone())?;
    *CA.lock().map_err(|e| e.to_string())? = Some(created.ca);
    Ok(s.disk.clone())
}

fn no_check(_: &std::path::Path, _: &[String]) -> Result<(), String> {
    Ok(())
}

fn client(ctx: &LiveCtx<'_>) -> Result<Client, String> {
    let port = ctx.hostfwd_port.ok_or("no hostfwd port")?;
    let ca = CA
        .lock()
        .map_err(|e| e.to_string())?
        .clone()
        .ok_or("no CA: the datastore was not made")?;
    Client::new(port, &ca)
}

fn token() -> Result<String, String> {
    TOKEN
        .lock()
        .map_err(|e| e.to_string())?
        .clone()
        .ok_or_else(|| "not logged in".into())
}

fn expect(what: &str, r: &Reply, status: u16) -> Result<(), String> {
    if r.status == status {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected {status}, got {} {}",
            r.status, r.body
        ))
    }
}

fn json(r: &Reply) -> Result<serde_json::Value, String> {
    serde_json::from_str(&r.body).map_err(|e| format!("not JSON ({e}): {}", r.body))
}

/// The state of VM `name` in `GET /api/vms`.
fn state_of(c: &Client, t: &str, name: &str) -> Result<Option<String>, String> {
    let r = c.request("GET", "/api/vms", Some(t), b"")?;
    expect("GET /api/vms", &r, 200)?;
    let list = json(&r)?;
    Ok(list.as_array().and_then(|a| {
        a.iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["state"].as_str().map(String::from))
    }))
}

/// Polls until VM `name` is in `state` (at most 60 s).
fn wait_state(c: &Client, t: &str, name: &str, state: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let now = state_of(c, t, name)?;
        if now.as_deref() == Some(state) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("VM {name} never became {state} (is {now:?})"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Reads VM `name`'s console until `needle` appears (at most 60 s).
fn wait_console(c: &Client, t: &str, name: &str, needle: &str) -> Result<(), String> {
    wait_console_n(c, t, name, needle, 1)
}

/// Reads VM `name`'s console until `needle` appeared `n` times (at most 60 s).
fn wait_console_n(c: &Client, t: &str, name: &str, needle: &str, n: usize) -> Result<(), String> {
    let start = Instant::now();
    let mut seen = String::new();
    let mut since = 0u64;
    loop {
        let r = c.request(
            "GET",
            &format!("/api/vms/{name}/console?since={since}"),
            Some(t),
            b"",
        )?;
        expect("console", &r, 200)?;
        let v = json(&r)?;
        seen += v["data"].as_str().unwrap_or("");
        since = v["next"].as_u64().unwrap_or(since);
        if seen.matches(needle).count() >= n {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            let tail: String = seen.chars().rev().take(300).collect::<String>();
            return Err(format!(
                "console of {name} never showed {needle:?}; last: {:?}",
                tail.chars().rev().collect::<String>()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `mgmt-api`: log in, list, stop, start, console, create, delete; 401s; malformed and
/// oversized requests.
fn api(ctx: &mut LiveCtx<'_>) -> Result<String, String> {
    let c = client(ctx)?;
    // Nobody gets in uninvited: every endpoint but login wants a token.
    for (m, p) in [
        ("GET", "/api/host"),
        ("GET", "/api/vms"),
        ("GET", "/api/vms/alpha"),
        ("POST", "/api/vms/beta/stop"),
        ("POST", "/api/vms/beta/start"),
        ("GET", "/api/vms/alpha/console?since=0"),
        ("POST", "/api/vms"),
        ("DELETE", "/api/vms/alpha"),
    ] {
        let r = c.request(m, p, None, b"")?;
        expect(&format!("{m} {p} without a token"), &r, 401)?;
        let r = c.request(m, p, Some("0123456789abcdef"), b"")?;
        expect(&format!("{m} {p} with a made-up token"), &r, 401)?;
    }
    let r = c.request(
        "POST",
        "/api/login",
        None,
        br#"{"user":"root","password":"wrong"}"#,
    )?;
    expect("login with a wrong password", &r, 401)?;
    // The back-off after a failure: wait it out.
    std::thread::sleep(Duration::from_millis(1200));
    let body = format!(r#"{{"user":"root","password":"{PASSWORD}"}}"#);
    let r = c.request("POST", "/api/login", None, body.as_bytes())?;
    expect("login", &r, 200)?;
    let t = json(&r)?["token"]
        .as_str()
        .ok_or("login: no token")?
        .to_string();
    *TOKEN.lock().map_err(|e| e.to_string())? = Some(t.clone());
    let host = c.request("GET", "/api/host", Some(&t), b"")?;
    expect("GET /api/host", &host, 200)?;
    let h = json(&host)?;
    if h["board"] != "qemu-virt" || h["cpus"].as_u64().unwrap_or(0) < 1 {
        return Err(format!("host summary: {}", host.body));
    }
    for vm in ["alpha", "beta"] {
        wait_state(&c, &t, vm, "running")?;
    }
    let r = c.request("POST", "/api/vms/beta/stop", Some(&t), b"")?;
    expect("stop beta", &r, 200)?;
    wait_state(&c, &t, "beta", "stopped")?;
    let r = c.request("POST", "/api/vms/beta/stop", Some(&t), b"")?;
    expect("stop beta again", &r, 409)?;
    let r = c.request("POST", "/api/vms/beta/start", Some(&t), b"")?;
    expect("start beta", &r, 200)?;
    wait_state(&c, &t, "beta", "running")?;
    wait_console(&c, &t, "alpha", "starting a shell on the console")?;
    let r = c.request(
        "POST",
        "/api/vms/alpha/console",
        Some(&t),
        b"echo api-$((6*7))\n",
    )?;
    expect("console input", &r, 200)?;
    wait_console(&c, &t, "alpha", "api-42")?;
    let stats = c.request("GET", "/api/vms/alpha/stats", Some(&t), b"")?;
    expect("stats", &stats, 200)?;
    if json(&stats)?["exits"].as_u64().unwrap_or(0) == 0 {
        return Err(format!("stats count no exits: {}", stats.body));
    }
    // Create from a TOML file, refused with line and column when wrong, then delete.
    let s = shared()?;
    let good = std::fs::read(&s.create_file).map_err(|e| e.to_string())?;
    let r = c.request("POST", "/api/vms", Some(&t), &good)?;
    expect("create gamma", &r, 201)?;
    if state_of(&c, &t, "gamma")?.as_deref() != Some("stopped") {
        return Err("gamma is not listed as stopped after create".into());
    }
    let bad = String::from_utf8_lossy(&good).replace("memory_mib = 64", "memory_mib = 63");
    let r = c.request("POST", "/api/vms", Some(&t), bad.as_bytes())?;
    expect("create with memory_mib = 63", &r, 400)?;
    let e = json(&r)?;
    if e["line"].as_u64() != Some(4) || e["column"].as_u64().is_none() {
        return Err(format!("the 400 does not point at line 4: {}", r.body));
    }
    let r = c.request("DELETE", "/api/vms/gamma", Some(&t), b"")?;
    expect("delete gamma", &r, 200)?;
    if state_of(&c, &t, "gamma")?.is_some() {
        return Err("gamma still listed after delete".into());
    }
    // Malformed and oversized requests get a 4xx, and the host stays up.
    let out = c.raw(b"\x01\x02 garbage\r\n\r\n")?;
    let bad = crate::https::parse_reply(&out).ok_or("no answer to garbage")?;
    if !(400..500).contains(&bad.status) {
        return Err(format!("garbage got {}", bad.status));
    }
    let big = format!(
        "POST /api/vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 10000000\r\n\r\n"
    );
    let out = c.raw(big.as_bytes())?;
    let r = crate::https::parse_reply(&out).ok_or("no answer to an oversized request")?;
    expect("10 MB body", &r, 413)?;
    let long = format!(
        "GET /api/host HTTP/1.1\r\nX-Long: {}\r\n\r\n",
        "a".repeat(20000)
    );
    let out = c.raw(long.as_bytes())?;
    let r = crate::https::parse_reply(&out).ok_or("no answer to a long header")?;
    expect("20 KB header", &r, 431)?;
    expect(
        "GET /api/host after the bad requests",
        &c.request("GET", "/api/host", Some(&t), b"")?,
        200,
    )?;
    Ok("[xtask] mgmt-api: ok".into())
}

fn hvctl_bin() -> Result<PathBuf, String> {
    crate::build::run(
        crate::build::cargo()
            .args(["build", "-p", "hvctl"])
            .args(crate::build::quiet()),
    )?;
    Ok(workspace_root().join("target/debug/hvctl"))
}

/// Runs hvctl against the host; returns its stdout, or its stderr as the error.
fn hvctl(ctx: &LiveCtx<'_>, args: &[&str]) -> Result<String, String> {
    let port = ctx.hostfwd_port.ok_or("no hostfwd port")?;
    let ca = CA
        .lock()
        .map_err(|e| e.to_string())?
        .clone()
        .ok_or("no CA")?;
    let dir = workspace_root().join("target/scenarios/hvctl-home");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(hvctl_bin()?)
        .args(args)
        .env("HVCTL_HOST", format!("https://127.0.0.1:{port}"))
        .env("HVCTL_CA", &ca)
        .env("XDG_CONFIG_HOME", &dir)
        .env_remove("HVCTL_TOKEN")
        .output()
        .map_err(|e| format!("hvctl: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "hvctl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            stdout
        ))
    }
}

/// `hvctl`: login, vm list, stop, start, console, create (then the API deletes it).
fn hvctl_steps(ctx: &mut LiveCtx<'_>) -> Result<String, String> {
    let dir = workspace_root().join("target/scenarios");
    let pw = dir.join("mgmt-password");
    std::fs::write(&pw, PASSWORD).map_err(|e| e.to_string())?;
    let pw = pw.display().to_string();
    hvctl(ctx, &["login", "--password-file", &pw])?;
    let list = hvctl(ctx, &["vm", "list"])?;
    if !(list.contains("alpha") && list.contains("beta") && list.contains("running")) {
        return Err(format!("hvctl vm list:\n{list}"));
    }
    hvctl(ctx, &["vm", "stop", "alpha"])?;
    let list = hvctl(ctx, &["vm", "list"])?;
    let alpha = list.lines().find(|l| l.starts_with("alpha")).unwrap_or("");
    if !alpha.contains("stopped") {
        return Err(format!("after hvctl vm stop alpha:\n{list}"));
    }
    hvctl(ctx, &["vm", "start", "alpha"])?;
    let console = hvctl(ctx, &["vm", "console", "alpha"])?;
    if !console.contains("api-42") {
        return Err(format!(
            "hvctl vm console alpha lacks earlier output: {console}"
        ));
    }
    let s = shared()?;
    let file = s.create_file.display().to_string();
    hvctl(ctx, &["vm", "create", &file])?;
    let list = hvctl(ctx, &["vm", "list"])?;
    if !list.contains("gamma") {
        return Err(format!("hvctl vm create did not define gamma:\n{list}"));
    }
    let c = client(ctx)?;
    expect(
        "delete gamma",
        &c.request("DELETE", "/api/vms/gamma", Some(&token()?), b"")?,
        200,
    )?;
    Ok("[xtask] hvctl: ok".into())
}

/// `mgmt-browser`: headless Chromium logs in, sees both VMs, stops beta with a click and
/// sees the page say so.
fn browser(ctx: &mut LiveCtx<'_>) -> Result<String, String> {
    let port = ctx.hostfwd_port.ok_or("no hostfwd port")?;
    let b = crate::browser::Browser::start()?;
    let shot = workspace_root().join("target/qemu-logs/mgmt-browser-failure.png");
    let run = || -> Result<(), String> {
        b.goto(&format!("https://127.0.0.1:{port}/"))?;
        let user = b.wait_for("#user", |_| true, Duration::from_secs(30))?;
        user.clear()?;
        user.send_keys("root")?;
        b.find("#password")?.send_keys(PASSWORD)?;
        b.find("#login")?.click()?;
        let timeout = Duration::from_secs(60);
        b.wait_for("#host", |t| t.contains("qemu-virt"), timeout)?;
        for vm in ["alpha", "beta"] {
            b.wait_for(
                &format!("tr[data-vm=\"{vm}\"] td.state"),
                |t| t == "running",
                timeout,
            )?;
        }
        // The live console in the page shows alpha's output.
        b.find("tr[data-vm=\"alpha\"] a.vm-name")?.click()?;
        // The page keeps the newest output only: wait for alpha's latest boot.
        b.wait_for(
            "#console-output",
            |t| t.contains("Enter 'help' for a list of built-in commands"),
            timeout,
        )?;
        b.find("tr[data-vm=\"beta\"] button[data-action=\"stop\"]")?
            .click()?;
        b.wait_for("tr[data-vm=\"beta\"] td.state", |t| t == "stopped", timeout)?;
        Ok(())
    };
    let r = b.or_screenshot(run(), &shot);
    let _ = b.quit();
    r?;
    // The page and the API agree.
    let c = client(ctx)?;
    if state_of(&c, &token()?, "beta")?.as_deref() != Some("stopped") {
        return Err("the browser showed beta stopped but the API does not".into());
    }
    Ok("[xtask] mgmt-browser: ok".into())
}

/// `shutdown`: the guest hears its power button and powers itself off.
fn shutdown(ctx: &mut LiveCtx<'_>) -> Result<String, String> {
    let c = client(ctx)?;
    let t = token()?;
    // alpha was stopped and started by hvctl: wait until its second boot watches the
    // button (a press before that is lost, and only the 30 s timeout would stop it).
    wait_console_n(&c, &t, "alpha", "power button: acpid watches gpio-keys", 2)?;
    let r = c.request("POST", "/api/vms/alpha/shutdown", Some(&t), b"")?;
    expect("shutdown alpha", &r, 200)?;
    Ok("[xtask] shutdown alpha asked".into())
}

/// The management scenario (see the module doc).
pub fn scenario(images: &mut crate::guest::GuestImages) -> Result<Scenario, String> {
    let k = crate::guest::ensure_generic_61(images)?;
    let initrd = workspace_root().join("target/scenarios/power-button-initramfs.cpio.gz");
    crate::guest::write_initramfs_with_modules(
        images,
        crate::guest::GENERIC_61,
        &["gpio_keys", "evdev"],
        crate::guest::DEFAULT_INIT,
        &initrd,
    )?;
    let vm = |name: &str| {
        format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory_mib = 128\nkernel = \"{}\"\ninitrd = \"{}\"\ncmdline = \"console=ttyAMA0 rdinit=/init\"\nautostart = true\n",
            k.image.display(),
            initrd.display()
        )
    };
    let alpha = write_vms("mgmt-alpha", &vm("alpha"))?;
    let beta = write_vms("mgmt-beta", &vm("beta"))?;
    // As the API gets it: images already on the datastore, no autostart. Line 4 is
    // memory_mib (the 400 check points there).
    let kname = k
        .image
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("Image");
    let iname = initrd
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("initrd");
    let create_file = write_vms(
        "mgmt-gamma",
        &format!(
            "[[vm]]\nname = \"gamma\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"IMAGES/{kname}\"\ninitrd = \"IMAGES/{iname}\"\ncmdline = \"console=ttyAMA0\"\n"
        ),
    )?;
    let _ = SHARED.set(Shared {
        vms: vec![alpha, beta],
        disk: workspace_root().join("target/scenarios/mgmt-datastore.img"),
        create_file,
    });
    // The image's own VM table is empty: every VM comes from the datastore.
    let table = workspace_root().join("examples/vms/none.toml");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let up = "mgmt: 10.0.2.15/24 via DHCP";
    let shells = [
        "[alpha] [initramfs] starting a shell on the console",
        "[beta] [initramfs] starting a shell on the console",
    ];
    let live = |at: &[&str], action| LiveStep { at: s(at), action };
    Ok(Scenario {
        host_disk: Some(HostDisk {
            features: &[],
            drive: "nvm0",
            devices: &["nvme,serial=hv-nvme0,drive=nvm0"],
            drive_options: "",
            blkdebug: None,
            make: make_disk,
            check: no_check,
        }),
        host_nic: Some(HostNic {
            features: &[],
            devices: &["virtio-net-pci,netdev=net0,disable-legacy=on,romfile="],
            netdev_options: "",
            hostfwd_to: Some("10.0.2.15:443"),
        }),
        live: vec![
            live(&[up, shells[0], shells[1]], api),
            live(&["[xtask] mgmt-api: ok"], hvctl_steps),
            live(&["[xtask] hvctl: ok"], browser),
            live(&["[xtask] mgmt-browser: ok"], shutdown),
        ],
        input: vec![(
            s(&["[hv] VM 0 `alpha` stopped: guest called PSCI SYSTEM_OFF"]),
            "\x1d:poweroff\r".into(),
        )],
        forbid: linux_forbid(),
        timeout: Duration::from_secs(480),
        ..Scenario::new(
            "mgmt-api+hvctl+mgmt-browser",
            qemu_virt(table),
            s(&[
                "[hv] mgmt: datastore hv-datastore mounted",
                "[hv] mgmt: VM `alpha` defined from VMS/mgmt-alpha.toml (autostart)",
                "[hv] mgmt: VM `beta` defined from VMS/mgmt-beta.toml (autostart)",
                up,
                "[xtask] mgmt-api: ok",
                "[xtask] hvctl: ok",
                "[xtask] mgmt-browser: ok",
                "[hv] VM `alpha`: power button pressed (shutdown)",
                // After the prompt alpha shows (`/ # `), on the same line.
                "[initramfs] power button pressed: powering off",
                "[hv] VM 0 `alpha` stopped: guest called PSCI SYSTEM_OFF",
                "[hv] powering off",
            ]),
        )
    })
}

/// The evaluation scenarios' datastore.
fn eval_disk() -> PathBuf {
    workspace_root().join("target/scenarios/mgmt-eval-datastore.img")
}

/// First boot: a fresh datastore with one autostart VM (the test guest).
fn make_eval_disk() -> Result<PathBuf, String> {
    let guest = crate::build::test_guest()?;
    let vm = write_vms(
        "mgmt-evalvm",
        &format!(
            "[[vm]]\nname = \"evalvm\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"{}\"\ncmdline = \"\"\nautostart = true\n",
            guest.display()
        ),
    )?;
    datastore(eval_disk(), 64 << 20, vec![vm])?;
    Ok(eval_disk())
}

/// Later boots: the same datastore, with the record the earlier boots left.
fn reuse_eval_disk() -> Result<PathBuf, String> {
    let d = eval_disk();
    if d.exists() {
        Ok(d)
    } else {
        Err("mgmt-evaluation: run the first boot (its datastore) first".into())
    }
}

/// `mgmt-evaluation`: an evaluation build, booted four times on one datastore with QEMU's
/// RTC at the first boot, 179 days later (VMs start), 181 days later (a start is refused
/// with the message) and before the first boot (still refused: the count keeps the
/// latest time seen).
pub fn evaluation_scenarios() -> Vec<Scenario> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let started = "[hv] VM 0 `evalvm`: 1 vCPU(s)";
    let ended = "[hv] evaluation: evaluation period ended on 2026-06-30 (180 days after first boot on 2026-01-01): install a licensed build (built without --features evaluation) to start VMs; running VMs keep running";
    let refused = "[hv] VM `evalvm` not started: evaluation period ended on 2026-06-30";
    let boot =
        |n: u32, what: &str, rtc: &str, first: bool, expect: Vec<String>, forbid: &[&str]| {
            let mut forbid_all = s(&["FAIL", "PANIC", "FATAL", "cannot write HV/EVAL.BIN"]);
            forbid_all.extend(s(forbid));
            let table = workspace_root().join("examples/vms/none.toml");
            Scenario {
                host_disk: Some(HostDisk {
                    features: &["evaluation"],
                    drive: "nvm0",
                    devices: &["nvme,serial=hv-nvme0,drive=nvm0"],
                    drive_options: "",
                    blkdebug: None,
                    make: if first {
                        make_eval_disk
                    } else {
                        reuse_eval_disk
                    },
                    check: no_check,
                }),
                extra_args: vec!["-rtc".into(), format!("base={rtc}")],
                expect_exit: false,
                forbid: forbid_all,
                timeout: Duration::from_secs(120),
                ..Scenario::new(
                    format!("mgmt-evaluation-{n}-{what}"),
                    qemu_virt(table),
                    expect,
                )
            }
        };
    vec![
        boot(
            1,
            "first-boot",
            "2026-01-01T00:00:00",
            true,
            s(&[
                "[hv] evaluation: day 0 of 180, 180 days left (first boot 2026-01-01)",
                started,
            ]),
            &[],
        ),
        boot(
            2,
            "day-179",
            // 179.5 days on: the boot's own seconds cannot round the count either way.
            "2026-06-29T12:00:00",
            false,
            s(&[
                "[hv] evaluation: day 179 of 180, 1 day left (first boot 2026-01-01)",
                started,
            ]),
            &["evaluation period ended"],
        ),
        boot(
            3,
            "day-181",
            "2026-07-01T00:00:00",
            false,
            s(&[ended, refused]),
            &[started],
        ),
        boot(
            4,
            "clock-set-back",
            "2025-12-01T00:00:00",
            false,
            s(&[ended, refused]),
            &[started],
        ),
    ]
}
