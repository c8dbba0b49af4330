//! Runs one scenario without the `nftpol` binary:
//! `cargo run -p nftpol-lab --example run_scenario -- SCENARIO.yaml [--json] [--nodes N] [--expect EXPECTED.json] [--via-service]`.
//! Exit codes as `nftpol lab run`.

use std::process::ExitCode;

use nftpol_lab::{compare, run, RunOptions};

#[expect(clippy::print_stdout, reason = "an example binary prints its output")]
fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut json = false;
    let mut expect = None;
    let mut options = RunOptions::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--via-service" => options.via_service = true,
            "--nodes" => options.nodes = args.next().and_then(|n| n.parse().ok()),
            "--expect" => expect = args.next(),
            _ => scenario = Some(arg),
        }
    }
    let Some(scenario) = scenario else {
        eprintln!("usage: run_scenario SCENARIO.yaml [--json] [--nodes N] [--expect EXPECTED.json] [--via-service]");
        return ExitCode::from(2);
    };
    let result = std::fs::read_to_string(&scenario)
        .map_err(|e| e.to_string())
        .and_then(|yaml| run(&yaml, &scenario, &options).map_err(|e| e.to_string()));
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.truth_table());
    }
    let Some(expected) = expect else {
        return ExitCode::SUCCESS;
    };
    let mismatches = std::fs::read_to_string(&expected)
        .map_err(|e| e.to_string())
        .and_then(|text| compare(&report, &text).map_err(|e| e.to_string()));
    match mismatches {
        Ok(m) if m.is_empty() => ExitCode::SUCCESS,
        Ok(m) => {
            for mismatch in &m {
                eprintln!("MISMATCH {mismatch}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
