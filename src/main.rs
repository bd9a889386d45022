//! `repro` binary: parse arguments, run, map the outcome to the documented exit codes
//! (0 all good, 1 a target failed or a gate regression, 2 usage/config/data/infrastructure error;
//! a panic exits 1 inside a run's own process and 2 elsewhere, never 101).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    repro::machine::tune_allocator();
    let cli = match repro::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    // Every panic prints its message and location; one inside a run is caught and recorded there.
    repro::failure::install_panic_hook();
    match std::panic::catch_unwind(|| repro::app::main(cli)) {
        Ok(result) => repro::Outcome::exit_code(&result),
        Err(_) => {
            eprintln!("error: repro stopped on the internal error above (a bug: please report it with the output of `repro env`)");
            ExitCode::from(repro::failure::panic_exit_status())
        }
    }
}
