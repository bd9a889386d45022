//! `repro-lite` binary: validate, report, gate and status with no libtorch or ONNX Runtime, mapping the
//! outcome to the documented exit codes (0 all good, 1 a failed target or gate, 2 usage/config/data).

use std::process::ExitCode;

use clap::Parser;
use repro_lite::cli::{LiteCli, LiteCommand};
use repro_lite::{gate, report, status, validate, Outcome};

fn main() -> ExitCode {
    let cli = match LiteCli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        LiteCommand::Validate(a) => validate::command(&cli.lock, &a),
        LiteCommand::Report(a) => report::command(&a),
        LiteCommand::Gate(a) => gate::command(&a),
        LiteCommand::Status(a) => status::command(&a.dir),
    };
    Outcome::exit_code(&result)
}
