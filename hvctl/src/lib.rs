//! `hvctl`: the command-line client of the hypervisor's management API
//! (docs/management.md). HTTPS with rustls, trusting only the install-time CA given with
//! `--ca` (or the public web roots without it); certificates are always verified.

pub mod cli;
pub mod client;
pub mod token;

use cli::{Cli, Command, VmCommand};
use client::{decode, segment, Body, Client, Failure};
use serde::Deserialize;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

/// Why a command failed; [`std::fmt::Display`] gives the line `hvctl` prints on stderr.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// Printed as `hvctl: MESSAGE`.
    Msg(String),
    /// An error in a file at a position, printed as `FILE:LINE:COLUMN: MESSAGE` (the form
    /// editors and terminals link to).
    At {
        /// The file as given on the command line.
        file: String,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What is wrong there.
        message: String,
    },
}

impl Error {
    /// An [`Error::Msg`] from a string slice.
    pub fn msg(s: &str) -> Error {
        Error::Msg(s.to_owned())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Msg(m) => write!(f, "hvctl: {m}"),
            Error::At {
                file,
                line,
                column,
                message,
            } => write!(f, "{file}:{line}:{column}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// One VM as `GET /api/vms` lists it.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    /// Its name.
    pub name: String,
    /// `running`, `stopped` or `shutting-down`.
    pub state: String,
    /// Virtual CPUs.
    pub vcpus: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Whether it starts at boot.
    pub autostart: bool,
}

#[derive(Deserialize)]
struct Evaluation {
    days_left: i64,
    expired: bool,
}

#[derive(Deserialize)]
struct HostInfo {
    board: String,
    support: String,
    cpus: u64,
    memory_mib: u64,
    memory_free_mib: u64,
    uptime_s: u64,
    evaluation: Option<Evaluation>,
}

#[derive(Deserialize)]
struct Stats {
    cpu_time_ms: u64,
    exits: u64,
    memory_mib: u64,
}

#[derive(Deserialize)]
struct Console {
    next: u64,
    data: String,
}

#[derive(Deserialize)]
struct Token {
    token: String,
}

#[derive(Deserialize)]
struct Created {
    name: String,
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    let host = || {
        cli.host
            .as_deref()
            .ok_or_else(|| Error::msg("no host: give --host https://HOST[:PORT] or set HVCTL_HOST"))
    };
    match &cli.command {
        Command::Login {
            user,
            password_file,
        } => {
            let client = Client::new(host()?, cli.ca.as_deref(), None)?;
            login(&client, user, password_file.as_deref())
        }
        Command::Logout => logout(cli.host.as_deref(), cli.ca.as_deref()),
        Command::Host => {
            let client = Client::new(host()?, cli.ca.as_deref(), token::load()?)?;
            let h: HostInfo = client.get("/api/host")?;
            print!("{}", host_text(&h));
            Ok(())
        }
        Command::Vm(vm) => {
            let client = Client::new(host()?, cli.ca.as_deref(), token::load()?)?;
            vm_command(&client, vm)
        }
    }
}

fn login(client: &Client, user: &str, password_file: Option<&Path>) -> Result<(), Error> {
    let password = match password_file {
        Some(f) => {
            let s = std::fs::read_to_string(f)
                .map_err(|e| Error::Msg(format!("cannot read {}: {e}", f.display())))?;
            let first = s.lines().next().unwrap_or("").to_owned();
            if first.is_empty() {
                return Err(Error::Msg(format!(
                    "{}: the first line (the password) is empty",
                    f.display()
                )));
            }
            first
        }
        None => rpassword::prompt_password(format!("Password for {user} at {}: ", client.base()))
            .map_err(|e| {
            Error::Msg(format!(
                "cannot read the password from the terminal: {e} (use --password-file FILE)"
            ))
        })?,
    };
    let body = serde_json::json!({ "user": user, "password": password }).to_string();
    let answer = match client.call("POST", "/api/login", Body::Json(&body)) {
        Ok(a) => a,
        Err(Failure::Status {
            code: 401, error, ..
        }) => {
            return Err(Error::Msg(format!(
                "login failed: {}",
                error.as_deref().unwrap_or("wrong user or password")
            )))
        }
        Err(f) => return Err(f.into_error()),
    };
    let t: Token = decode(&answer)?;
    if !token::valid(&t.token) {
        return Err(Error::msg("the host sent an unusable token"));
    }
    let file = token::path()?;
    token::save(&file, &t.token)?;
    eprintln!(
        "logged in to {} as {user}; token in {}",
        client.base(),
        file.display()
    );
    Ok(())
}

fn logout(host: Option<&str>, ca: Option<&Path>) -> Result<(), Error> {
    let file = token::path()?;
    let tok = token::load()?;
    let mut ended = Ok(());
    if let (Some(h), Some(t)) = (host, tok) {
        let client = Client::new(h, ca, Some(t))?;
        match client.call("POST", "/api/logout", Body::None) {
            // 401: the session had already ended.
            Ok(_) | Err(Failure::Status { code: 401, .. }) => {}
            Err(f) => ended = Err(f.into_error()),
        }
    }
    // The local token goes even when the host could not be told.
    let removed = token::remove(&file)?;
    if std::env::var_os("HVCTL_TOKEN").is_some_and(|t| !t.is_empty()) {
        eprintln!("hvctl: HVCTL_TOKEN is still set in this shell; unset it too");
    } else if !removed {
        eprintln!("hvctl: was not logged in");
    }
    ended
}

fn vm_command(client: &Client, vm: &VmCommand) -> Result<(), Error> {
    let action = |name: &str, what: &str, done: &str| -> Result<(), Error> {
        client.call_or_err(
            "POST",
            &format!("/api/vms/{}/{what}", segment(name)?),
            Body::None,
        )?;
        eprintln!("{name}: {done}");
        Ok(())
    };
    match vm {
        VmCommand::List => {
            let vms: Vec<VmInfo> = client.get("/api/vms")?;
            print!("{}", vm_table(&vms));
            Ok(())
        }
        VmCommand::Start { name } => action(name, "start", "started"),
        VmCommand::Stop { name } => action(name, "stop", "powered off"),
        VmCommand::Shutdown { name } => action(
            name,
            "shutdown",
            "asked to shut down (powered off in 30 s if it does not)",
        ),
        VmCommand::Reset { name } => action(name, "reset", "reset"),
        VmCommand::Delete { name } => {
            client.call_or_err(
                "DELETE",
                &format!("/api/vms/{}", segment(name)?),
                Body::None,
            )?;
            eprintln!("{name}: deleted");
            Ok(())
        }
        VmCommand::Stats { name } => {
            let s: Stats = client.get(&format!("/api/vms/{}/stats", segment(name)?))?;
            print!("{}", stats_text(&s));
            Ok(())
        }
        VmCommand::Create { file } => create(client, file),
        VmCommand::Console { name, follow } => console(client, name, *follow),
    }
}

fn create(client: &Client, file: &Path) -> Result<(), Error> {
    let shown = file.display().to_string();
    let toml = std::fs::read_to_string(file)
        .map_err(|e| Error::Msg(format!("cannot read {shown}: {e}")))?;
    match client.call("POST", "/api/vms", Body::Toml(&toml)) {
        Ok(answer) => {
            let c: Created = decode(&answer)?;
            eprintln!("{}: created", c.name);
            Ok(())
        }
        Err(Failure::Status {
            code: 400,
            error,
            line: Some(line),
            column,
        }) => Err(Error::At {
            file: shown,
            line,
            column: column.unwrap_or(1),
            message: error.unwrap_or_else(|| "invalid VM file".into()),
        }),
        Err(Failure::Status {
            code: 400,
            error: Some(e),
            ..
        }) => Err(Error::Msg(format!("{shown}: {e}"))),
        Err(f) => Err(f.into_error()),
    }
}

fn console(client: &Client, name: &str, follow: bool) -> Result<(), Error> {
    let path = format!("/api/vms/{}/console", segment(name)?);
    if follow {
        let input = client.clone();
        let input_path = path.clone();
        // Lines typed on stdin go to the console as they are (with their newline).
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdin.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if let Err(f) = input.call("POST", &input_path, Body::Bytes(&line)) {
                            eprintln!("{} (console input)", f.into_error());
                        }
                    }
                }
            }
        });
    }
    let mut since = 0;
    let mut out = std::io::stdout();
    loop {
        let c: Console = client.get(&format!("{path}?since={since}"))?;
        out.write_all(c.data.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::Msg(format!("writing to stdout: {e}")))?;
        since = c.next;
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The `vm list` table: a header and one line per VM, columns aligned.
pub fn vm_table(vms: &[VmInfo]) -> String {
    let mut rows = vec![["NAME", "STATE", "VCPUS", "MEMORY", "AUTOSTART"].map(String::from)];
    for v in vms {
        rows.push([
            v.name.clone(),
            v.state.clone(),
            v.vcpus.to_string(),
            format!("{} MiB", v.memory_mib),
            if v.autostart { "yes" } else { "no" }.into(),
        ]);
    }
    let mut width = [0; 5];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(width).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            line.extend(std::iter::repeat_n(' ', w - c.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn host_text(h: &HostInfo) -> String {
    let up = h.uptime_s;
    let mut s = format!(
        "board:      {} ({})\ncpus:       {}\nmemory:     {} MiB ({} MiB free)\nuptime:     {}d {:02}:{:02}:{:02}\n",
        h.board,
        h.support,
        h.cpus,
        h.memory_mib,
        h.memory_free_mib,
        up / 86400,
        up / 3600 % 24,
        up / 60 % 60,
        up % 60
    );
    if let Some(e) = &h.evaluation {
        if e.expired {
            s.push_str("evaluation: expired: VMs cannot be started\n");
        } else {
            s.push_str(&format!("evaluation: {} days left\n", e.days_left));
        }
    }
    s
}

fn stats_text(s: &Stats) -> String {
    format!(
        "cpu time:  {}.{:03} s\nexits:     {}\nmemory:    {} MiB\n",
        s.cpu_time_ms / 1000,
        s.cpu_time_ms % 1000,
        s.exits,
        s.memory_mib
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hvctl").chain(args.iter().copied()))
    }

    #[test]
    fn parses_commands() {
        let c = parse(&["--host", "https://h:8443", "--ca", "ca.der", "vm", "list"]).unwrap();
        assert_eq!(c.host.as_deref(), Some("https://h:8443"));
        assert_eq!(c.ca.as_deref(), Some(Path::new("ca.der")));
        assert_eq!(c.command, Command::Vm(VmCommand::List));

        let c = parse(&["login", "--password-file", "pw"]).unwrap();
        assert_eq!(
            c.command,
            Command::Login {
                user: "root".into(),
                password_file: Some("pw".into())
            }
        );
        // --host is global: it may come after the command too.
        let c = parse(&["vm", "console", "web", "--follow", "--host", "h"]).unwrap();
        assert_eq!(c.host.as_deref(), Some("h"));
        assert_eq!(
            c.command,
            Command::Vm(VmCommand::Console {
                name: "web".into(),
                follow: true
            })
        );
        let c = parse(&["vm", "create", "web.toml"]).unwrap();
        assert_eq!(
            c.command,
            Command::Vm(VmCommand::Create {
                file: "web.toml".into()
            })
        );
        for (cmd, want) in [
            ("start", VmCommand::Start { name: "a".into() }),
            ("stop", VmCommand::Stop { name: "a".into() }),
            ("shutdown", VmCommand::Shutdown { name: "a".into() }),
            ("reset", VmCommand::Reset { name: "a".into() }),
            ("delete", VmCommand::Delete { name: "a".into() }),
            ("stats", VmCommand::Stats { name: "a".into() }),
        ] {
            assert_eq!(parse(&["vm", cmd, "a"]).unwrap().command, Command::Vm(want));
        }
    }

    #[test]
    fn rejects_bad_command_lines() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["vm", "start"]).is_err());
        assert!(parse(&["vm", "frobnicate", "a"]).is_err());
        assert!(parse(&["vm", "list", "extra"]).is_err());
        assert!(parse(&["login", "--password-file"]).is_err());
    }

    #[test]
    fn table_is_aligned() {
        let vms = [
            VmInfo {
                name: "web".into(),
                state: "running".into(),
                vcpus: 2,
                memory_mib: 512,
                autostart: true,
            },
            VmInfo {
                name: "database".into(),
                state: "shutting-down".into(),
                vcpus: 16,
                memory_mib: 16384,
                autostart: false,
            },
        ];
        assert_eq!(
            vm_table(&vms),
            "NAME      STATE          VCPUS  MEMORY     AUTOSTART\n\
             web       running        2      512 MiB    yes\n\
             database  shutting-down  16     16384 MiB  no\n"
        );
        assert_eq!(vm_table(&[]), "NAME  STATE  VCPUS  MEMORY  AUTOSTART\n");
    }

    #[test]
    fn located_errors_print_like_a_compiler() {
        let e = Error::At {
            file: "web.toml".into(),
            line: 3,
            column: 7,
            message: "unknown field `cpu`".into(),
        };
        assert_eq!(e.to_string(), "web.toml:3:7: unknown field `cpu`");
        assert_eq!(Error::msg("x").to_string(), "hvctl: x");
    }

    #[test]
    fn host_and_stats_text() {
        let h = HostInfo {
            board: "qemu-virt".into(),
            support: "supported".into(),
            cpus: 4,
            memory_mib: 2048,
            memory_free_mib: 1024,
            uptime_s: 86400 + 3600 * 2 + 60 * 3 + 4,
            evaluation: Some(Evaluation {
                days_left: 170,
                expired: false,
            }),
        };
        let t = host_text(&h);
        assert!(t.contains("uptime:     1d 02:03:04\n"), "{t}");
        assert!(t.contains("evaluation: 170 days left\n"), "{t}");
        let s = stats_text(&Stats {
            cpu_time_ms: 12_345,
            exits: 7,
            memory_mib: 512,
        });
        assert_eq!(s, "cpu time:  12.345 s\nexits:     7\nmemory:    512 MiB\n");
    }
}
