//! gensetctl: the operator's command-line client of the admin JSON API. Finds the daemon
//! and its token from `GENSET_ADMIN_URL`/`GENSET_ADMIN_TOKEN` or the daemon's config file.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(name = "gensetctl", version, about = "Operate a running genset daemon")]
pub struct Cli {
    /// The daemon's configuration file (for its admin address and token).
    #[arg(long, short, global = true, env = "GENSET_CONFIG", default_value = "/etc/genset/genset.toml")]
    pub config: PathBuf,
    /// Admin API base URL (overrides the config file).
    #[arg(long, global = true, env = "GENSET_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// Admin token (overrides admin.token_file).
    #[arg(long, global = true, env = "GENSET_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The daemon's state: mode, upstreams, recorder, store.
    Status,
    /// Recent recorded exchanges, newest first.
    Traffic(TrafficArgs),
    /// Use cases.
    #[command(subcommand, name = "use-cases")]
    UseCases(UseCaseCmd),
    /// Virtual keys.
    #[command(subcommand)]
    Keys(KeyCmd),
    /// The console: `gensetctl admin bootstrap` prints a one-time link to set the first
    /// admin's password (only while no admin exists).
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Show the failover mode and each upstream's breaker, or flip the mode:
    /// `gensetctl mode force-local --reason "provider outage drill"`.
    Mode(ModeArgs),
    /// Readiness of the local models per use case (score, 95% interval, verdict, trend), or
    /// one use case in detail with its history and worst examples side by side.
    Readiness(ReadinessArgs),
    /// Failover drills: `gensetctl drill start --use-case support --duration 5m`,
    /// `drill status ID`, `drill abort ID`, `drill list`.
    #[command(subcommand)]
    Drill(crate::drill::api::DrillCmd),
    /// An availability (SLA) report: `gensetctl report --period 2026-11 --format pdf -o report.pdf`.
    Report(ReportArgs),
    /// Install a provisioning bundle (models, use cases, upstreams) on this host, all or
    /// nothing. Run as root on the appliance; see docs/provisioning.md.
    Provision(crate::provision::ProvisionArgs),
    /// Write the man pages (used when building the packages).
    #[command(hide = true)]
    Man {
        /// Folder to write gensetctl.1 and one page per subcommand into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write shell completions (used when building the packages).
    #[command(hide = true)]
    Completions {
        shell: clap_complete::Shell,
        /// Folder to write the file into, named as the shell expects; stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct TrafficArgs {
    #[arg(long)]
    pub use_case: Option<String>,
    #[arg(long)]
    pub served_by: Option<String>,
    #[arg(long)]
    pub status: Option<i64>,
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Show exchanges older than this id (the "next" id printed by the previous page).
    #[arg(long)]
    pub before: Option<i64>,
}

#[derive(Args)]
pub struct ReportArgs {
    /// A month (2026-11), an ISO week (2026-W45) or a range of days (2026-11-01..2026-11-15), UTC.
    #[arg(long)]
    pub period: String,
    /// json | csv | html | pdf
    #[arg(long, default_value = "html")]
    pub format: String,
    /// Write the report here (required for pdf); absent: print it.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReadinessArgs {
    /// One use case; absent: all use cases with a local model.
    pub use_case: Option<String>,
}

#[derive(Subcommand)]
pub enum AdminCmd {
    /// A fresh one-time setup link for the first admin (valid 24 hours).
    Bootstrap,
}

#[derive(Args)]
pub struct ModeArgs {
    /// auto | force-cloud | force-local; absent: show the current state.
    pub mode: Option<String>,
    /// Why (required to change the mode; recorded with the event).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Subcommand)]
pub enum UseCaseCmd {
    /// Configured use cases with their traffic over the last 24 hours.
    List,
    /// Group unclassified traffic by system prompt and propose use cases.
    Suggest {
        #[arg(long, default_value_t = 7)]
        days: i64,
    },
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Issue a virtual key (shown once).
    Create {
        #[arg(long)]
        use_case: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        upstream: Option<String>,
    },
    List,
    Revoke {
        id: String,
    },
}

struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    fn new(cli: &Cli) -> anyhow::Result<Client> {
        let (base, token, cert) = match (&cli.admin_url, &cli.admin_token) {
            (Some(u), Some(t)) => (u.clone(), t.clone(), std::env::var_os("GENSET_ADMIN_CA").map(std::path::PathBuf::from)),
            _ => {
                let cfg = crate::config::Config::load(&cli.config)
                    .with_context(|| "cannot find the daemon: set GENSET_ADMIN_URL and GENSET_ADMIN_TOKEN, or pass --config".to_string())?;
                let mut addr = cfg.admin.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let scheme = if cfg.admin.tls.is_some() { "https" } else { "http" };
                let url = cli.admin_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
                let token = match &cli.admin_token {
                    Some(t) => t.clone(),
                    None => std::fs::read_to_string(&cfg.admin.token_file)
                        .with_context(|| {
                            format!(
                                "cannot read the admin token {} (run as root or a member of the genset group)",
                                cfg.admin.token_file.display()
                            )
                        })?
                        .trim()
                        .to_string(),
                };
                (url, token, cfg.admin.tls.map(|(cert, _)| cert))
            }
        };
        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(30));
        // The admin listener's own certificate (self-signed by the package) is trusted as is.
        if let Some(cert) = &cert {
            let pem = std::fs::read(cert).with_context(|| format!("admin.tls_cert: cannot read {}", cert.display()))?;
            let c = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("admin.tls_cert: {} is not a PEM certificate", cert.display()))?;
            builder = builder.add_root_certificate(c);
        }
        let http = builder.build()?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), token, http })
    }

    /// A GET whose answer is returned as bytes (reports).
    async fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the daemon at {}", self.base))?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the daemon's answer")?;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            bail!("{status}: {}", v["error"]["message"].as_str().unwrap_or("unknown error"));
        }
        Ok(bytes.to_vec())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut rb = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.with_context(|| format!("cannot reach the daemon at {}", self.base))?;
        let status = resp.status();
        let v: Value = resp.json().await.context("the daemon's answer is not JSON")?;
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().unwrap_or("unknown error");
            bail!("{status}: {msg}");
        }
        Ok(v)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<String> {
    // Commands that do not talk to the daemon.
    match &cli.command {
        Command::Provision(a) => return crate::provision::run_cli(a.clone(), cli.config.clone(), cli.json).await,
        Command::Man { out } => return write_man_pages(out),
        Command::Completions { shell, out } => return write_completions(*shell, out.as_deref()),
        _ => {}
    }
    let c = Client::new(&cli)?;
    if let Command::Report(a) = &cli.command {
        let format: genset_report::Format = a.format.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        if format == genset_report::Format::Pdf && a.output.is_none() {
            bail!("a PDF report needs -o FILE");
        }
        let bytes = c.get_bytes(&crate::drill::api::ctl_report(&a.period, &a.format)).await?;
        return match &a.output {
            Some(path) => {
                std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
                Ok(format!("wrote {} ({} bytes)", path.display(), bytes.len()))
            }
            None => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        };
    }
    use reqwest::Method;
    let v = match &cli.command {
        Command::Status => c.call(Method::GET, "/api/v1/status", None).await?,
        Command::Traffic(a) => {
            let mut q = vec![format!("limit={}", a.limit)];
            if let Some(u) = &a.use_case {
                q.push(format!("use_case={}", urlencode(u)));
            }
            if let Some(s) = &a.served_by {
                q.push(format!("served_by={}", urlencode(s)));
            }
            if let Some(s) = a.status {
                q.push(format!("status={s}"));
            }
            if let Some(b) = a.before {
                q.push(format!("before={b}"));
            }
            c.call(Method::GET, &format!("/api/v1/traffic?{}", q.join("&")), None).await?
        }
        Command::UseCases(UseCaseCmd::List) => c.call(Method::GET, "/api/v1/use-cases", None).await?,
        Command::UseCases(UseCaseCmd::Suggest { days }) => {
            c.call(Method::GET, &format!("/api/v1/use-cases/suggest?days={days}"), None).await?
        }
        Command::Keys(KeyCmd::Create { use_case, name, upstream }) => {
            c.call(Method::POST, "/api/v1/keys", Some(serde_json::json!({"use_case": use_case, "name": name, "upstream": upstream})))
                .await?
        }
        Command::Keys(KeyCmd::List) => c.call(Method::GET, "/api/v1/keys", None).await?,
        Command::Admin(AdminCmd::Bootstrap) => {
            let mut v = c.call(Method::POST, "/api/v1/console/bootstrap", None).await?;
            let path = v["setup_path"].as_str().unwrap_or("").to_string();
            v["setup_url"] = Value::String(format!("{}{path}", c.base));
            v
        }
        Command::Mode(ModeArgs { mode: None, .. }) => c.call(Method::GET, "/api/v1/failover", None).await?,
        Command::Mode(ModeArgs { mode: Some(m), reason }) => {
            let Some(reason) = reason.as_deref().filter(|r| !r.trim().is_empty()) else {
                bail!("changing the mode needs --reason \"...\" (it is recorded with who did it)");
            };
            m.parse::<crate::control::Mode>().map_err(|e| anyhow::anyhow!(e))?;
            let actor = format!(
                "{}@{} via gensetctl",
                std::env::var("SUDO_USER")
                    .or_else(|_| std::env::var("USER"))
                    .or_else(|_| std::env::var("LOGNAME"))
                    .unwrap_or_else(|_| "unknown".into()),
                std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
            );
            c.call(Method::POST, "/api/v1/mode", Some(serde_json::json!({"mode": m, "reason": reason, "actor": actor}))).await?;
            c.call(Method::GET, "/api/v1/failover", None).await?
        }
        Command::Readiness(a) => c.call(Method::GET, &crate::evaluate::api::ctl_path(a.use_case.as_deref()), None).await?,
        Command::Drill(d) => {
            let (m, path, body) = crate::drill::api::ctl_drill(d, &ctl_actor());
            c.call(m, &path, body).await?
        }
        Command::Keys(KeyCmd::Revoke { id }) => c.call(Method::DELETE, &format!("/api/v1/keys/{}", urlencode(id)), None).await?,
        Command::Provision(_) | Command::Man { .. } | Command::Completions { .. } | Command::Report(_) => unreachable!("handled above"),
    };
    if cli.json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    Ok(render(&cli.command, &v))
}

/// Who runs gensetctl (user@host), recorded with drills and mode flips.
fn ctl_actor() -> String {
    format!(
        "{}@{} via gensetctl",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into()),
        std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn fmt_ts(ms: &Value) -> String {
    let Some(ms) = ms.as_i64() else { return "-".into() };
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A table with columns sized to their contents.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect(), &mut out);
    for r in rows {
        line(r.clone(), &mut out);
    }
    out
}

fn render(cmd: &Command, v: &Value) -> String {
    let mut out = String::new();
    match cmd {
        Command::Admin(AdminCmd::Bootstrap) => {
            let _ = writeln!(out, "Open this link once to set the first admin's password (valid 24 hours):");
            let _ = writeln!(out, "{}", s(&v["setup_url"]));
        }
        Command::Mode(_) => {
            let m = &v["mode"];
            let _ = writeln!(out, "mode: {}  (effective: {})", s(&m["mode"]), s(&v["effective"]));
            let _ = writeln!(out, "set {} by {}: {}", fmt_ts(&m["since_ms"]), s(&m["actor"]), s(&m["reason"]));
            let rows: Vec<Vec<String>> = v["upstreams"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| {
                    vec![
                        s(&u["name"]),
                        s(&u["api"]),
                        s(&u["breaker"]),
                        if u["failover"].as_bool() == Some(true) { "failover".into() } else { "cloud".into() },
                        fmt_ts(&u["since_ms"]),
                        s(&u["last_error"]),
                    ]
                })
                .collect();
            out.push('\n');
            out.push_str(&table(&["UPSTREAM", "API", "BREAKER", "SERVING", "SINCE", "LAST ERROR"], &rows));
        }
        Command::Status => {
            let r = &v["recording"];
            let _ = writeln!(out, "genset {}  mode: {}  up {}s", s(&v["version"]), s(&v["mode"]), s(&v["uptime_s"]));
            let _ = writeln!(out, "proxy  http://{}   admin http://{}", s(&v["listen"]["proxy"]), s(&v["listen"]["admin"]));
            let _ = writeln!(out, "store  {} ({} exchanges)", s(&v["store"]["backend"]), s(&v["store"]["exchanges"]));
            let _ = writeln!(
                out,
                "recorder  queue {}/{}  written {}  dropped {}  write errors {}  redact {}  retention {}",
                s(&r["queue_depth"]),
                s(&r["queue_capacity"]),
                s(&r["written"]),
                s(&r["dropped"]),
                s(&r["write_errors"]),
                s(&r["redact"]),
                s(&r["retention"])
            );
            let rows: Vec<Vec<String>> = v["upstreams"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| vec![s(&u["name"]), s(&u["api"]), s(&u["base_url"]), s(&u["credential"])])
                .collect();
            out.push('\n');
            out.push_str(&table(&["UPSTREAM", "API", "BASE URL", "CREDENTIAL"], &rows));
        }
        Command::Traffic(_) => {
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let tokens = match (e["prompt_tokens"].as_i64(), e["completion_tokens"].as_i64()) {
                        (Some(p), Some(c)) => format!("{p}/{c}"),
                        _ => "-".into(),
                    };
                    vec![
                        s(&e["id"]),
                        fmt_ts(&e["ts_ms"]),
                        s(&e["use_case"]),
                        s(&e["endpoint"]),
                        s(&e["model"]),
                        s(&e["served_by"]),
                        s(&e["status"]),
                        if e["completed"].as_bool() == Some(true) { "yes".into() } else { format!("no {}", s(&e["error"])) },
                        format!("{:.1}", e["total_ms"].as_f64().unwrap_or(0.0)),
                        tokens,
                    ]
                })
                .collect();
            out.push_str(&table(
                &["ID", "TIME (UTC)", "USE CASE", "ENDPOINT", "MODEL", "SERVED BY", "STATUS", "COMPLETE", "MS", "TOKENS"],
                &rows,
            ));
            match v["next_before"].as_i64() {
                Some(n) => {
                    let _ = writeln!(out, "\nolder: gensetctl traffic --before {n}");
                }
                None => {
                    let _ = writeln!(out, "\n(end of recorded traffic)");
                }
            }
        }
        Command::UseCases(UseCaseCmd::List) => {
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| {
                    vec![
                        s(&u["name"]),
                        s(&u["rules"]),
                        s(&u["upstream"]),
                        s(&u["requests_24h"]),
                        s(&u["errors_24h"]),
                        fmt_ts(&u["last_ts_ms"]),
                    ]
                })
                .collect();
            out.push_str(&table(&["USE CASE", "RULES", "UPSTREAM", "REQUESTS 24H", "ERRORS 24H", "LAST SEEN"], &rows));
        }
        Command::UseCases(UseCaseCmd::Suggest { .. }) => {
            let items = v["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                out.push_str("no unclassified traffic with a system prompt in the period\n");
            }
            for it in items {
                let _ = writeln!(out, "# {} requests like: {:?}", s(&it["requests"]), s(&it["system_prompt_excerpt"]));
                let _ = writeln!(out, "{}", s(&it["config"]));
            }
        }
        Command::Keys(KeyCmd::Create { .. }) => {
            let _ = writeln!(out, "created virtual key {} ({}) for use case {}", s(&v["id"]), s(&v["name"]), s(&v["use_case"]));
            let _ = writeln!(out, "\n    {}\n", s(&v["key"]));
            let _ = writeln!(out, "This is the only time the key is shown. Clients use it as their API key with genset's base URL.");
        }
        Command::Keys(KeyCmd::List) => {
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    vec![
                        s(&k["id"]),
                        s(&k["name"]),
                        s(&k["use_case"]),
                        format!("gk-…{}", s(&k["last4"])),
                        fmt_ts(&k["created_ms"]),
                        if k["revoked_ms"].is_null() { "active".into() } else { format!("revoked {}", fmt_ts(&k["revoked_ms"])) },
                    ]
                })
                .collect();
            out.push_str(&table(&["ID", "NAME", "USE CASE", "KEY", "CREATED", "STATE"], &rows));
        }
        Command::Keys(KeyCmd::Revoke { id }) => {
            let _ = writeln!(out, "revoked {id}");
        }
        Command::Readiness(a) => out.push_str(&crate::evaluate::api::render(a.use_case.as_deref(), v)),
        Command::Drill(crate::drill::api::DrillCmd::List { .. }) => out.push_str(&crate::drill::api::render_list(v)),
        Command::Drill(_) => out.push_str(&crate::drill::api::render_drill(v)),
        Command::Report(_) => {}
        Command::Provision(_) | Command::Man { .. } | Command::Completions { .. } => {}
    }
    out
}

/// `gensetctl man --out DIR`: gensetctl.1 and gensetctl-<command>.1 for each visible command.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<String> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    // After build(), each subcommand's display name is `gensetctl-<command>`.
    let mut page = |c: &clap::Command| -> anyhow::Result<()> {
        let name = c.get_display_name().unwrap_or(c.get_name()).to_string();
        let mut buf = Vec::new();
        clap_mangen::Man::new(c.clone()).render(&mut buf)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path.display().to_string());
        Ok(())
    };
    page(&cmd)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        page(sub)?;
    }
    Ok(written.join("\n"))
}

/// `gensetctl completions SHELL [--out DIR]`.
fn write_completions(shell: clap_complete::Shell, dir: Option<&std::path::Path>) -> anyhow::Result<String> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            let path = clap_complete::generate_to(shell, &mut cmd, "gensetctl", d)?;
            Ok(path.display().to_string())
        }
        None => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "gensetctl", &mut buf);
            Ok(String::from_utf8(buf)?)
        }
    }
}
