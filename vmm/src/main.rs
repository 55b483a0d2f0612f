//! `minivmm`: parses the command line, builds the VM, runs it, and turns
//! the outcome into one message and an exit status.

use std::io::Write;

use clap::Parser;
use vmm::api::Ended;
use vmm::cli::Cli;
use vmm::config::VmConfig;
use vmm::exit::{outcome, EXIT_OK, EXIT_VMM_ERROR};
use vmm::vm::Vm;

fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Some(path) = cli.api_socket.clone() {
        let event = match vmm::api::serve(&path, cli)? {
            Ended::Guest(event) => event,
            Ended::VmmShutdown => {
                eprintln!("minivmm: shut down through the API");
                return Ok(EXIT_OK);
            }
        };
        let (status, message) = outcome(&event);
        let _ = std::io::stdout().flush();
        eprintln!("minivmm: {message}");
        return Ok(status);
    }
    let config = VmConfig::from_cli(cli)?;
    if config.dry_run {
        print!("{}", vmm::plan::dry_run(&config)?);
        return Ok(0);
    }
    let vm = Vm::build(&config)?;
    let event = vm.run()?;
    let (status, message) = outcome(&event);
    let _ = std::io::stdout().flush();
    eprintln!("minivmm: {message}");
    Ok(status)
}

fn main() {
    vmm::startup::mark_exec();
    vmm::logger::init();
    let cli = Cli::parse_from(vmm::cli::expand_plan_subcommand(std::env::args_os()));
    let status = match run(cli) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("minivmm: error: {e:#}");
            EXIT_VMM_ERROR
        }
    };
    log::info!("counters: {}", devices::perf::snapshot());
    // vCPU threads may still sit in KVM_RUN: leave without joining them.
    let _ = std::io::stdout().flush();
    std::process::exit(status)
}
