//! `relaywatch-lab drill SCENARIO --dir DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use lab::drill::{self, Scenario};
use lab::labfile::LabFile;

pub fn main(args: &[String]) -> ExitCode {
    let mut scenario = None;
    let mut dir = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--dir" => dir = iter.next().map(PathBuf::from),
            "-h" | "--help" => {
                print!("{}", super::USAGE);
                return ExitCode::SUCCESS;
            }
            other if scenario.is_none() && !other.starts_with('-') => {
                scenario = Some(other.to_string())
            }
            other => {
                eprintln!("relaywatch-lab drill: unexpected argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.as_str()).collect();
    let Some(name) = scenario else {
        eprintln!("relaywatch-lab drill: which scenario? one of {names:?} or all");
        return ExitCode::from(2);
    };
    let scenarios: Vec<Scenario> = if name == "all" {
        Scenario::ALL.to_vec()
    } else if let Some(scenario) = Scenario::parse(&name) {
        vec![scenario]
    } else {
        eprintln!("relaywatch-lab drill: unknown scenario {name:?}; one of {names:?} or all");
        return ExitCode::from(2);
    };
    let Some(dir) = dir else {
        eprintln!("relaywatch-lab drill: --dir DIR is needed (the directory the lab printed)");
        return ExitCode::from(2);
    };
    let file = match LabFile::read(&dir) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("relaywatch-lab drill: {error:#}");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C ends the waits early; the fault is still cleared before the process exits.
    match lab::signals::install_interrupt_flag() {
        Ok(flag) => drill::set_interrupt_flag(flag),
        Err(error) => eprintln!("relaywatch-lab drill: {error:#}; Ctrl-C will not clear a fault"),
    }
    let mut out = |line: &str| println!("{line}");
    match drill::run_all(&file, &scenarios, &mut out) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("relaywatch-lab drill: {error:#}");
            ExitCode::FAILURE
        }
    }
}
