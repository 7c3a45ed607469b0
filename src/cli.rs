//! The `latchkey` command line: `serve`, and user and session administration
//! that works beside a running server on the same database.

/// Prints a line on standard output. A reader that went away (`latchkey
/// user list | head`) ends the program quietly, as other tools do, instead
/// of the panic `println!` gives.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::profile::Profile;
use crate::secret::Password;
use crate::startup::{Application, open_admin};
use crate::users::Accounts;

/// Session-based login service.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file; LATCHKEY_* environment variables override it.
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also print the audit trail of what a command does (RUST_LOG overrides).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the login service.
    Serve,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// List and revoke sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Forward-auth's access rules.
    #[command(subcommand)]
    Access(AccessCommand),
}

#[derive(Debug, Subcommand)]
enum AccessCommand {
    /// Print which access rule decides a URL, and what it decides.
    Check {
        /// The URL as the browser asks for it (`https://app.example.com/path`).
        url: String,
        /// The request's method.
        #[arg(long, default_value = "GET", value_name = "METHOD")]
        method: String,
        /// Decide for this user's roles; without it, for a visitor not signed in.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user (asks for the password twice unless --password-stdin).
    Add {
        /// Username.
        name: String,
        /// Role to grant; repeat for several.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Display name (sent to apps behind forward-auth as Remote-Name).
        #[arg(long = "name", value_name = "TEXT")]
        display_name: Option<String>,
        /// E-mail address (sent as Remote-Email).
        #[arg(long, value_name = "ADDR")]
        email: Option<String>,
        #[command(flatten)]
        input: PasswordInput,
    },
    /// Change a user's display name or e-mail address ("" clears one);
    /// their sessions see it at their next request.
    Set {
        /// Username.
        name: String,
        /// Display name.
        #[arg(long = "name", value_name = "TEXT")]
        display_name: Option<String>,
        /// E-mail address.
        #[arg(long, value_name = "ADDR")]
        email: Option<String>,
    },
    /// List users.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set a new password; ends all of the user's sessions and lifts any lock.
    Passwd {
        /// Username.
        name: String,
        #[command(flatten)]
        input: PasswordInput,
    },
    /// Add or remove roles; takes effect on the user's sessions at their next request.
    Roles {
        /// Username.
        name: String,
        /// Role to add; repeat for several.
        #[arg(long = "add", value_name = "ROLE")]
        add: Vec<String>,
        /// Role to remove; repeat for several.
        #[arg(long = "remove", value_name = "ROLE")]
        remove: Vec<String>,
    },
    /// Disable a user: login refused, sessions ended.
    Disable {
        /// Username.
        name: String,
    },
    /// Enable a disabled user (and lift any lock on their account).
    Enable {
        /// Username.
        name: String,
    },
    /// Lift the lock that failed sign-ins put on an account.
    Unlock {
        /// Username.
        name: String,
    },
    /// Delete a user and their sessions.
    Remove {
        /// Username.
        name: String,
    },
}

#[derive(Debug, Args)]
struct PasswordInput {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// List live sessions.
    List {
        /// Only this user's sessions.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// End every session of a user.
    Revoke {
        /// Whose sessions to end.
        #[arg(long, value_name = "NAME")]
        user: String,
    },
}

/// Parses the command line and runs it; errors are one line on stderr and
/// a non-zero exit.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latchkey: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: a message that
/// already quotes its cause (`password refused: {cause}`) is not followed by
/// the cause again.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if out.contains(&cause) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&cause);
    }
    out
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour codes only for a person at a terminal, not for a log file or
    // a service manager's journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Warnings from loading the configuration need a subscriber already.
    let early_format = match std::env::var("LATCHKEY_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    // Administrative commands print their result on standard output and
    // stay quiet otherwise: warnings only, the audit trail with --verbose.
    let level = if matches!(cli.command, Command::Serve) {
        "info"
    } else if cli.verbose {
        "warn,latchkey::audit=info"
    } else {
        "warn"
    };
    init_logging(early_format, level);
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::User(cmd) => {
            if !matches!(cmd, UserCommand::Add { .. }) {
                database_must_exist(&config)?;
            }
            user(&open_admin(&config).await?.accounts(), cmd).await
        }
        Command::Session(cmd) => {
            database_must_exist(&config)?;
            session(&open_admin(&config).await?.accounts(), cmd).await
        }
        Command::Access(AccessCommand::Check { url, method, user }) => {
            access_check(&config, &url, &method, user.as_deref()).await
        }
    }
}

/// `latchkey access check`: the rule that matches and the verdict, as
/// `/auth/forward` would decide for that URL (the session aside).
async fn access_check(
    config: &Config,
    url: &str,
    method: &str,
    user: Option<&str>,
) -> anyhow::Result<()> {
    use crate::access::Verdict;
    // Typed by a person: `post` means POST here (a proxy's `post` would not).
    let method = method.to_ascii_uppercase();
    let target = crate::access::target_of_url(&method, url)
        .map_err(|e| anyhow::anyhow!("{url}: {e} (a forward-auth check would get 400)"))?;
    let matched = config.access.matching(&target);
    if config.access.rules.is_empty() {
        say!(
            "(no access rules are configured: give the file that has them with --config FILE \
             or LATCHKEY_CONFIG)"
        );
    }
    say!("{} {}", target.method, target.url());
    match matched.rule {
        Some(rule) => say!("rule {}: {}", rule.number, rule.policy),
        None => say!("no rule matches: the default, {}", matched.policy),
    }
    let (who, roles) = match user {
        Some(name) => {
            database_must_exist(config)?;
            let users = open_admin(config).await?.accounts().list_users().await?;
            let found = users
                .into_iter()
                .find(|u| u.username == name)
                .with_context(|| format!("no user {name}"))?;
            if found.disabled {
                say!("{name}: refused (the account is disabled)");
                return Ok(());
            }
            (
                format!("{name} (roles: {})", roles_text(&found.roles)),
                Some(found.roles),
            )
        }
        None => ("not signed in".to_owned(), None),
    };
    let verdict = match matched.policy.verdict(roles.as_deref()) {
        Verdict::Allow => "allowed (200)",
        Verdict::SignIn => "must sign in (302 or 401 with the login page's address)",
        Verdict::Forbidden => "forbidden (403)",
    };
    say!("{who}: {verdict}");
    Ok(())
}

/// Only `serve` and `user add` may start a new SQLite database: any other
/// command run in the wrong directory would otherwise leave an empty one
/// there, and then report that the user it was asked about does not exist.
fn database_must_exist(config: &Config) -> anyhow::Result<()> {
    if let Some(path) = crate::store::sqlite_path(&config.database_url)
        && !path.exists()
    {
        bail!(
            "no database at {} (LATCHKEY_DATABASE_URL): run this where `latchkey serve` runs, \
             or create the first user with `latchkey user add`",
            path.display()
        );
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

fn read_password(input: &PasswordInput) -> anyhow::Result<Password> {
    if input.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        if trimmed.is_empty() {
            bail!("no password on standard input");
        }
        return Ok(Password::new(trimmed.to_owned()));
    }
    if !std::io::stdin().is_terminal() {
        bail!("standard input is not a terminal; use --password-stdin to pipe a password");
    }
    let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
    let second =
        rpassword::prompt_password("Password again: ").context("cannot read the password")?;
    if first != second {
        bail!("the passwords differ");
    }
    Ok(Password::new(first))
}

async fn user(accounts: &Accounts, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            name,
            roles,
            display_name,
            email,
            input,
        } => {
            // Checked before the password is asked for.
            let profile = Profile::new(display_name.as_deref(), email.as_deref())?;
            let password = read_password(&input)?;
            let user = accounts
                .create_user_with(&name, &password, &roles, &profile)
                .await?;
            say!(
                "created user {} (roles: {})",
                user.username,
                roles_text(&user.roles)
            );
        }
        UserCommand::List { json } => {
            let users = accounts.list_users().await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                say!(
                    "{:<24} {:<24} {:<9} {:<25} {:<24} EMAIL",
                    "USERNAME",
                    "ROLES",
                    "STATUS",
                    "CREATED",
                    "NAME"
                );
                for u in users {
                    let status = if u.disabled { "disabled" } else { "active" };
                    say!(
                        "{:<24} {:<24} {:<9} {:<25} {:<24} {}",
                        u.username,
                        roles_text(&u.roles),
                        status,
                        u.created_at,
                        u.display_name.as_deref().unwrap_or("-"),
                        u.email.as_deref().unwrap_or("-"),
                    );
                }
            }
        }
        UserCommand::Passwd { name, input } => {
            let password = read_password(&input)?;
            accounts.change_password(&name, &password).await?;
            say!("password changed for {name}; their sessions have ended");
        }
        UserCommand::Set {
            name,
            display_name,
            email,
        } => {
            if display_name.is_none() && email.is_none() {
                bail!("nothing to change: give --name TEXT or --email ADDR (\"\" clears one)");
            }
            let old = accounts.profile(&name).await?;
            let profile = Profile::new(
                display_name.as_deref().or(old.display_name()),
                email.as_deref().or(old.email()),
            )?;
            accounts.set_profile(&name, &profile).await?;
            say!(
                "{name}: name {}, e-mail {}",
                profile.display_name().unwrap_or("(none)"),
                profile.email().unwrap_or("(none)")
            );
        }
        UserCommand::Roles { name, add, remove } => {
            if add.is_empty() && remove.is_empty() {
                bail!("nothing to change: give --add ROLE or --remove ROLE");
            }
            let roles = accounts.change_roles(&name, &add, &remove).await?;
            say!("roles of {name}: {}", roles_text(&roles));
        }
        UserCommand::Disable { name } => {
            accounts.set_disabled(&name, true).await?;
            say!("disabled {name}; their sessions have ended");
        }
        UserCommand::Enable { name } => {
            accounts.set_disabled(&name, false).await?;
            say!("enabled {name}");
        }
        UserCommand::Unlock { name } => {
            accounts.unlock(&name).await?;
            say!("unlocked {name}; they can sign in now");
        }
        UserCommand::Remove { name } => {
            accounts.remove_user(&name).await?;
            say!("removed {name}");
        }
    }
    Ok(())
}

fn roles_text(roles: &[String]) -> String {
    // The pages' wording, without spaces so that the table's columns hold.
    crate::routes::text::roles_text(roles).replace(", ", ",")
}

async fn session(accounts: &Accounts, cmd: SessionCommand) -> anyhow::Result<()> {
    match cmd {
        SessionCommand::List { user } => {
            let sessions = accounts.list_sessions(user.as_deref()).await?;
            say!(
                "{:<10} {:<24} {:<22} LAST SEEN",
                "SESSION",
                "USERNAME",
                "SIGNED IN"
            );
            for s in sessions {
                say!(
                    "{:<10} {:<24} {:<22} {}",
                    s.id,
                    s.username,
                    s.created_at,
                    s.last_seen
                );
            }
        }
        SessionCommand::Revoke { user } => {
            let n = accounts.revoke_sessions(&user).await?;
            say!("revoked {n} session(s) of {user}");
        }
    }
    Ok(())
}
