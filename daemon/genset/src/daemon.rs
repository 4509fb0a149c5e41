//! Startup, wiring and shutdown of gensetd. The order matters and is the contract with
//! systemd (`Type=notify`): READY=1 only after the store is open, migrations ran and both
//! listeners are bound; on SIGTERM, STOPPING=1, in-flight requests drain, then the recorder
//! queue is written out, then the process exits. SIGHUP reloads the configuration, keeping
//! the old one if the new one is invalid.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::auth::KeyBook;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::{ProxyState, Routing};
use crate::record::Recorder;
use crate::record::writer::Writer;
use crate::store::Store;

/// A running daemon: its addresses and the means to stop it (tests drive this directly).
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub admin_token: String,
    pub store: Store,
    pub recorder: Recorder,
    config: Arc<ArcSwap<Config>>,
    proxy_state: web::Data<ProxyState>,
    proxy_server: actix_web::dev::ServerHandle,
    admin_server: actix_web::dev::ServerHandle,
    servers: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    background: CancellationToken,
    control_task: tokio::task::JoinHandle<()>,
    pub controller: Arc<crate::control::Controller>,
    /// The evaluator (issue 6): tests run a round with `evaluator.run_round()`.
    pub evaluator: Arc<crate::evaluate::Evaluator>,
    evaluate_task: tokio::task::JoinHandle<()>,
    /// Drills (issue 8): live and replay drills, the schedule, reports.
    pub drills: Arc<crate::drill::Drills>,
    drill_task: tokio::task::JoinHandle<()>,
}

/// Read the admin token, creating the file (mode 0600) with a fresh random token when absent.
pub fn ensure_admin_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => anyhow::bail!("admin.token_file {} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("admin.token_file: cannot read {}", path.display())),
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("admin.token_file: cannot create {}", dir.display()))?;
    }
    let token = format!("gat-{}", KeyBook::new_salt());
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("admin.token_file: cannot create {}", path.display()))?;
    writeln!(f, "{token}")?;
    tracing::info!(path = %path.display(), "created a new admin token file (mode 0600)");
    Ok(token)
}

/// What the binary adds to the core daemon: the console's routes on the admin listener (the
/// console crate depends on the core, never the reverse, so the core takes them as a hook).
#[derive(Clone, Default)]
pub struct Extensions {
    /// Registered on the admin listener's app, before the JSON API's routes.
    pub admin_routes: Option<AdminRoutes>,
}

/// Routes a binary adds to the admin listener's app (see [`Extensions`]).
pub type AdminRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// Open the store, start the recorder and both listeners. Returns once everything is bound.
pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    start_with(cfg, Extensions::default()).await
}

/// [`start`], with the binary's [`Extensions`].
pub async fn start_with(cfg: Config, ext: Extensions) -> anyhow::Result<Running> {
    crate::install_crypto_provider();
    let metrics = Arc::new(Metrics::new().context("metrics registry")?);
    let store = Store::open(&cfg.store.url, cfg.store.max_connections)
        .await
        .with_context(|| format!("store.url: cannot open the store ({})", redact_url(&cfg.store.url)))?;
    let salt = store.meta_get_or_init("key_salt", KeyBook::new_salt).await.context("store: reading the key salt")?;
    let vks = store.list_virtual_keys().await.context("store: loading virtual keys")?;
    let keys = Arc::new(KeyBook::new(&salt, &vks));
    let admin_token = ensure_admin_token(&cfg.admin.token_file)?;

    let (recorder, rx) = Recorder::channel(cfg.recording.queue, cfg.recording.max_body, metrics.clone());
    let background = CancellationToken::new();
    let writer = Writer {
        store: store.clone(),
        redact: cfg.recording.redact,
        batch: cfg.recording.batch,
        flush_interval: cfg.recording.flush_interval,
        metrics: metrics.clone(),
        stats: recorder.stats.clone(),
        // Cancelled at shutdown: from then on the writer drains without waiting out flushes.
        hurry: background.clone(),
    };
    let writer = tokio::spawn(writer.run(rx));

    tokio::spawn(crate::record::retention::run(
        store.clone(),
        cfg.recording.retention,
        Duration::from_secs(3600),
        metrics.clone(),
        background.clone(),
    ));

    let registry = if cfg.models.is_empty() {
        genset_engine::EngineRegistry::empty()
    } else {
        tracing::info!(models = cfg.models.len(), "loading local models");
        genset_engine::EngineRegistry::load(&cfg.models, &genset_engine::LoadOptions::default()).await.context("loading local models")?
    };
    let local = (!registry.is_empty()).then(|| Arc::new(crate::local_route::LocalRoute { registry: registry.clone() }));
    let accepted_since = crate::record::now_ms() - cfg.recording.retention.as_millis() as i64;
    keys.load_accepted(store.list_accepted_keys(accepted_since).await.context("store: loading accepted client keys")?);
    let (controller, control_task) =
        crate::control::Controller::start(store.clone(), &cfg, background.clone()).await.context("starting the failover controller")?;
    let routing = Routing::new(&cfg, &controller).context("building upstream clients")?;
    let proxy_state = web::Data::new(ProxyState {
        routing: ArcSwap::from_pointee(routing),
        recorder: recorder.clone(),
        keys: keys.clone(),
        local,
        controller: controller.clone(),
    });

    let ps = proxy_state.clone();
    let proxy = HttpServer::new(move || App::new().app_data(ps.clone()).configure(crate::proxy::configure))
        .workers(cfg.proxy.workers)
        .keep_alive(cfg.proxy.keep_alive)
        .shutdown_timeout(cfg.proxy.shutdown_grace.as_secs())
        .disable_signals()
        .backlog(4096)
        .max_connection_rate(1024)
        .bind(cfg.proxy.listen)
        .with_context(|| format!("proxy.listen: cannot bind {}", cfg.proxy.listen))?;
    let proxy_addr = proxy.addrs().first().copied().context("proxy.listen: no address bound")?;

    let config = Arc::new(ArcSwap::from_pointee(cfg.clone()));
    let (evaluator, evaluate_task) =
        crate::evaluate::Evaluator::start(store.clone(), config.clone(), registry.clone(), controller.clone(), background.clone()).await;
    let evaluator_data = web::Data::from(evaluator.clone());
    let (drills, drill_task) =
        crate::drill::Drills::start(store.clone(), controller.clone(), registry.clone(), config.clone(), background.clone()).await;
    let drills_data = web::Data::from(drills.clone());
    let admin_listener =
        std::net::TcpListener::bind(cfg.admin.listen).with_context(|| format!("admin.listen: cannot bind {}", cfg.admin.listen))?;
    let admin_addr = admin_listener.local_addr().context("admin.listen")?;
    let admin_state = web::Data::new(AdminState {
        store: store.clone(),
        recorder: recorder.clone(),
        keys,
        metrics,
        token: admin_token.clone(),
        started: Instant::now(),
        config: config.clone(),
        proxy_addr,
        admin_addr,
        models: registry,
        controller: controller.clone(),
    });
    let admin_routes = ext.admin_routes.clone();
    let admin = HttpServer::new(move || {
        let mut app = App::new().app_data(admin_state.clone()).app_data(evaluator_data.clone()).app_data(drills_data.clone());
        if let Some(routes) = &admin_routes {
            app = app.configure(|c| routes(c));
        }
        app.configure(crate::admin::configure)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5);
    let admin = match &cfg.admin.tls {
        Some((cert, key)) => admin
            .listen_rustls_0_23(admin_listener, admin_tls(cert, key)?)
            .with_context(|| format!("admin.listen: cannot listen on {admin_addr}"))?,
        None => admin.listen(admin_listener).with_context(|| format!("admin.listen: cannot listen on {admin_addr}"))?,
    };

    let proxy = proxy.run();
    let admin = admin.run();
    let proxy_server = proxy.handle();
    let admin_server = admin.handle();
    let servers = tokio::spawn(async move {
        let (a, b) = tokio::join!(proxy, admin);
        if let Err(e) = a.and(b) {
            tracing::error!(error = %e, "a listener failed");
        }
    });

    Ok(Running {
        proxy_addr,
        admin_addr,
        admin_token,
        store,
        recorder,
        config,
        proxy_state,
        proxy_server,
        admin_server,
        servers,
        writer,
        background,
        control_task,
        controller,
        evaluator,
        evaluate_task,
        drills,
        drill_task,
    })
}

impl Running {
    /// Swap in a new configuration. Listener addresses and the store need a restart; they
    /// are kept as they are and a warning says so.
    pub fn reload(&self, new: Config) -> anyhow::Result<()> {
        let old = self.config.load();
        if new.proxy.listen != old.proxy.listen || new.admin.listen != old.admin.listen || new.store.url != old.store.url {
            tracing::warn!("reload: listener addresses and store.url change only on restart");
        }
        if format!("{:?}", new.models) != format!("{:?}", old.models) {
            tracing::warn!("reload: [[models]] changes take effect on restart");
        }
        self.controller.reload(&new);
        let routing = Routing::new(&new, &self.controller).context("building upstream clients")?;
        self.proxy_state.routing.store(Arc::new(routing));
        self.config.store(Arc::new(new));
        Ok(())
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Graceful stop: stop accepting, let in-flight requests finish (up to the grace time),
    /// then drain the recorder queue into the store.
    pub async fn shutdown(self) {
        let Running {
            proxy_server,
            admin_server,
            servers,
            writer,
            background,
            proxy_state,
            recorder,
            store,
            control_task,
            evaluate_task,
            drill_task,
            ..
        } = self;
        proxy_server.stop(true).await;
        admin_server.stop(true).await;
        let _ = servers.await;
        // The controller's pending events are written before the store closes.
        background.cancel();
        let _ = evaluate_task.await;
        let _ = drill_task.await;
        let _ = control_task.await;
        // The last senders: once they are gone the writer drains the queue and returns.
        drop(proxy_state);
        drop(recorder);
        if let Err(e) = writer.await {
            tracing::error!(error = %e, "recorder writer failed");
        }
        store.close().await;
    }
}

/// The admin listener's TLS configuration from PEM files.
fn admin_tls(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("admin.tls_cert: cannot read {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("admin.tls_cert: no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("admin.tls_key: cannot read {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("admin.tls_cert: certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A store URL with any password hidden.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("*****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Run as the service: start, announce readiness, serve until SIGTERM/SIGINT, reload on SIGHUP.
pub async fn serve(config_path: &Path, cfg: Config) -> anyhow::Result<()> {
    serve_with(config_path, cfg, Extensions::default()).await
}

/// [`serve`], with the binary's [`Extensions`].
pub async fn serve_with(config_path: &Path, cfg: Config, ext: Extensions) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let running = start_with(cfg, ext).await?;
    tracing::info!(proxy = %running.proxy_addr, admin = %running.admin_addr, store = running.store.backend(), "gensetd ready");
    #[allow(clippy::print_stdout)]
    {
        let admin_scheme = if running.config().admin.tls.is_some() { "https" } else { "http" };
        println!("gensetd ready proxy=http://{} admin={admin_scheme}://{}", running.proxy_addr, running.admin_addr);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let watchdog = CancellationToken::new();
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let stop = watchdog.clone();
        let probe = running.admin_addr;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                // Prove more than a timer: the runtime schedules I/O and a listener accepts.
                if tokio::time::timeout(interval / 4, tokio::net::TcpStream::connect(probe)).await.is_ok_and(|r| r.is_ok()) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                } else {
                    tracing::warn!("watchdog: admin listener did not accept; withholding the ping");
                }
            }
        });
    }

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                match Config::load(config_path) {
                    Ok(new) => match running.reload(new) {
                        Ok(()) => tracing::info!(path = %config_path.display(), "configuration reloaded"),
                        Err(e) => tracing::error!(error = %e, "reload failed; keeping the running configuration"),
                    },
                    Err(e) => tracing::error!(error = %e, "new configuration is invalid; keeping the running one"),
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }
    tracing::info!("stopping: draining in-flight requests and the recorder queue");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let grace = running.config().proxy.shutdown_grace;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::ExtendTimeoutUsec((grace.as_micros() as u32).saturating_add(10_000_000))]);
    watchdog.cancel();
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Logs: to journald with structured fields when stderr is connected to the journal (under
/// systemd, `JOURNAL_STREAM` says so), else lines on stderr. `RUST_LOG` wins over the config.
/// Set up logging and, when configured, trace export (see [`crate::telemetry`]).
pub fn init_logging(t: &crate::config::TelemetryConfig) {
    crate::telemetry::init(t);
}
