//! The command line (clap derive).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// `hvctl --host URL [--ca CA.der] COMMAND`.
#[derive(Parser, Debug)]
#[command(
    name = "hvctl",
    version,
    about = "Manage a running hypervisor host over its HTTPS API",
    after_help = "The token is taken from $HVCTL_TOKEN, else from $XDG_CONFIG_HOME/hvctl/token \
                  (~/.config/hvctl/token), which `hvctl login` writes."
)]
pub struct Cli {
    /// The host's API: https://HOST[:PORT] (HOST[:PORT] alone means https).
    #[arg(long, env = "HVCTL_HOST", global = true, value_name = "URL")]
    pub host: Option<String>,
    /// Trust only this CA certificate (DER; the install-time `OUT.ca.der`) instead of the
    /// system's roots.
    #[arg(long, env = "HVCTL_CA", global = true, value_name = "CA.der")]
    pub ca: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum Command {
    /// Log in and keep the session token in the token file.
    Login {
        /// The user to log in as.
        #[arg(long, default_value = "root")]
        user: String,
        /// Read the password from the first line of this file instead of the terminal.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// End the session and remove the token file.
    Logout,
    /// Show the host: board, CPUs, memory, uptime, evaluation period.
    Host,
    /// Virtual machines.
    #[command(subcommand)]
    Vm(VmCommand),
}

/// `hvctl vm ...`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum VmCommand {
    /// Table of the VMs: NAME STATE VCPUS MEMORY AUTOSTART.
    List,
    /// Start a stopped VM.
    Start {
        /// The VM's name.
        name: String,
    },
    /// Power a VM off at once.
    Stop {
        /// The VM's name.
        name: String,
    },
    /// Ask the guest to power off (it is powered off after 30 s anyway).
    Shutdown {
        /// The VM's name.
        name: String,
    },
    /// Reset a VM.
    Reset {
        /// The VM's name.
        name: String,
    },
    /// Remove a stopped VM's definition from the datastore.
    Delete {
        /// The VM's name.
        name: String,
    },
    /// Print the VM's console output (the last 64 KiB the host keeps).
    Console {
        /// The VM's name.
        name: String,
        /// Keep printing new output (polled every 500 ms) and send stdin lines to the console.
        #[arg(long, short)]
        follow: bool,
    },
    /// Define a VM from a TOML file (one `[[vm]]` table).
    Create {
        /// The VM file.
        #[arg(value_name = "FILE.toml")]
        file: PathBuf,
    },
    /// Show a VM's counters: CPU time, exits, memory.
    Stats {
        /// The VM's name.
        name: String,
    },
}
