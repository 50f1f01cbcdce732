//! `tenant`, `client` and `keys`: administration on the store.

use anyhow::Result;
use clap::Subcommand;
use facegate_server::admin::Admin;
use facegate_server::at_rest::StorageConfig;
use serde_json::json;

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A tenant's CORS allow-list: the web origins the browser SDK may run on.
    #[command(subcommand)]
    Origins(OriginsCommand),
}

#[derive(Subcommand)]
pub enum OriginsCommand {
    /// Allow an origin: a domain name (app.example.com), an IPv4 address,
    /// or *.example.com for every subdomain. Scheme and port are not matched.
    Add {
        /// Tenant id or name.
        tenant: String,
        pattern: String,
    },
    /// Remove an origin.
    Remove { tenant: String, pattern: String },
    /// List a tenant's origins.
    List {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Create an API client; its secret is printed once.
    Create {
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        /// Comma-separated: face:match, face:session, face:search,
        /// face:search:insert, face:search:delete; or all.
        #[arg(long)]
        permissions: String,
        #[arg(long)]
        json: bool,
    },
    /// List clients (never their secrets).
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a client: its token requests and tokens stop working.
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a new signing key; older keys verify until their tokens expire.
    Rotate {
        #[arg(long)]
        json: bool,
    },
}

pub fn tenant(storage: &StorageConfig, cmd: TenantCommand) -> Result<()> {
    let admin = Admin::open(storage)?;
    match cmd {
        TenantCommand::Create { name, json } => {
            let t = admin.create_tenant(&name)?;
            if json {
                println!("{}", json!({"tenantId": t.id, "name": t.name}));
            } else {
                println!("created tenant {} ({})", t.name, t.id);
            }
        }
        TenantCommand::List { json } => {
            let tenants = admin.tenants()?;
            if json {
                let list: Vec<_> = tenants
                    .iter()
                    .map(|t| json!({"tenantId": t.id, "name": t.name}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for t in tenants {
                    println!("{}\t{}", t.id, t.name);
                }
            }
        }
        TenantCommand::Origins(cmd) => origins(&admin, cmd)?,
    }
    Ok(())
}

fn origins(admin: &Admin, cmd: OriginsCommand) -> Result<()> {
    match cmd {
        OriginsCommand::Add { tenant, pattern } => {
            let added = admin.add_origin(&tenant, &pattern)?;
            println!("allowed origin {added} for {tenant}");
        }
        OriginsCommand::Remove { tenant, pattern } => {
            if !admin.remove_origin(&tenant, &pattern)? {
                anyhow::bail!("{pattern} is not on {tenant}'s list");
            }
            println!("removed origin {pattern} from {tenant}");
        }
        OriginsCommand::List { tenant, json } => {
            let list = admin.origins(&tenant)?;
            if json {
                println!("{}", json!(list));
            } else {
                for p in list {
                    println!("{p}");
                }
            }
        }
    }
    Ok(())
}

pub fn client(storage: &StorageConfig, cmd: ClientCommand) -> Result<()> {
    let admin = Admin::open(storage)?;
    match cmd {
        ClientCommand::Create {
            tenant,
            permissions,
            json,
        } => {
            let (c, t, secret) = admin.create_client(&tenant, &permissions)?;
            if json {
                println!(
                    "{}",
                    json!({"clientId": c.id, "clientSecret": secret, "tenant": t.id, "permissions": c.permissions})
                );
            } else {
                println!(
                    "client_id:     {}\nclient_secret: {secret}\ntenant:        {} ({})",
                    c.id, t.name, t.id
                );
                println!(
                    "permissions:   {}\nThe secret is shown only now; store it safely.",
                    c.permissions.join(",")
                );
            }
        }
        ClientCommand::List { tenant, json } => {
            let clients = admin.clients(tenant.as_deref())?;
            let rows: Vec<_> = clients
                .iter()
                .map(|c| {
                    json!({"clientId": c.id, "tenant": c.tenant_id, "permissions": c.permissions,
                           "createdAt": c.created_at, "revokedAt": c.revoked_at})
                })
                .collect();
            if json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for c in clients {
                    let state = if c.revoked_at.is_some() { "revoked" } else { "active" };
                    println!("{}\t{}\t{}\t{}", c.id, c.tenant_id, state, c.permissions.join(","));
                }
            }
        }
        ClientCommand::Revoke { id, json } => {
            admin.revoke_client(&id)?;
            if json {
                println!("{}", json!({"clientId": id, "revoked": true}));
            } else {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}

pub fn keys(storage: &StorageConfig, cmd: KeysCommand) -> Result<()> {
    let admin = Admin::open(storage)?;
    let KeysCommand::Rotate { json } = cmd;
    let kids = admin.rotate_keys()?;
    // One new key per algorithm, in the ring's order: ES256 (tokens), RS256 (results).
    let (token_kid, result_kid) = (
        kids.first().cloned().unwrap_or_default(),
        kids.get(1).cloned().unwrap_or_default(),
    );
    if json {
        println!("{}", json!({"kid": token_kid, "resultKid": result_kid}));
    } else {
        println!(
            "new signing keys {token_kid} (ES256, tokens) and {result_kid} (RS256, results); running servers sign with them within their key-reload-interval (5 s by default)"
        );
    }
    Ok(())
}

/// `facegate reindex --model V`.
pub fn reindex(storage: &StorageConfig, models: &facegate_vision::ModelsDir, target: &str, json: bool) -> Result<()> {
    let admin = Admin::open(storage)?;
    let bar = crate::progress::bar(admin.pending_faces(target)?, "re-embedding");
    let key = std::env::var("FACEGATE_DATA_KEY").ok();
    let reports = admin.reindex(models, key.as_deref(), target, || bar.inc(1))?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    for r in &reports {
        println!(
            "{}: {} re-embedded, {} without image (kept on the old version until purged), {} without a face{}",
            r.tenant,
            r.embedded,
            r.without_image,
            r.no_face,
            if r.switched {
                "; switched to the new version"
            } else {
                ""
            }
        );
    }
    println!("restart `facegate serve` to search the re-indexed galleries");
    Ok(())
}
