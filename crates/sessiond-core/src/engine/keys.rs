//! The keyring: JWKS, rotation, reloads.

use super::*;

impl Engine {
    /// Reads the keyring from the identity store again (another node rotated it).
    pub(crate) async fn reload_keyring(&self) -> CoreResult<()> {
        let keyring = Keyring::load(&self.master, self.identity.load_keys().await?)?;
        self.install_keyring(keyring)
    }

    /// Makes `keyring` the one in force. When a key left it (revoked, or retired), the
    /// verified-token cache is emptied: its entries do not record which key signed them, and
    /// a token of a removed key must not live on there. (Swap first, then clear: a
    /// verification racing with this re-checks the keyring after caching, see
    /// [`Engine::verify_token`].)
    pub(crate) fn install_keyring(&self, keyring: Keyring) -> CoreResult<()> {
        let new = Arc::new(keyring);
        let old = std::mem::replace(
            &mut *self
                .keyring
                .write()
                .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))?,
            Arc::clone(&new),
        );
        if old.stored().iter().any(|k| !new.publishes(&k.kid)) {
            self.verified.clear();
        }
        Ok(())
    }

    pub fn jwks(&self) -> CoreResult<serde_json::Value> {
        Ok(self.keyring()?.jwks())
    }

    /// The algorithms of the published keys, signing key first.
    pub fn signing_algorithms(&self) -> CoreResult<Vec<String>> {
        let keyring = self.keyring()?;
        let mut algs: Vec<String> = keyring
            .stored()
            .iter()
            .filter(|k| k.state == KeyState::Signing)
            .map(|k| k.alg.clone())
            .collect();
        for k in keyring.stored() {
            if !algs.contains(&k.alg) {
                algs.push(k.alg.clone());
            }
        }
        Ok(algs)
    }

    pub fn keys(&self) -> CoreResult<Vec<StoredKey>> {
        Ok(self.keyring()?.stored().to_vec())
    }

    /// Rotates the keyring: the published next key starts signing at once.
    pub async fn rotate_keys(&self) -> CoreResult<Vec<StoredKey>> {
        let _one_at_a_time = self.rotation.lock().await;
        // From the keyring as stored, not this node's copy: a key another node revoked since
        // this one last loaded the keyring must not come back.
        let rotated = Keyring::load(&self.master, self.identity.load_keys().await?)?.rotated(
            &self.master,
            self.cfg.signing_alg,
            self.now(),
        )?;
        let keyring = Keyring::load(&self.master, rotated.clone())?;
        self.identity.replace_keys(rotated.clone()).await?;
        self.install_keyring(keyring)?;
        Ok(rotated)
    }

    /// Emergency revocation of a (leaked) key: it leaves the keyring and the JWKS at once,
    /// the tokens it signed are refused here at once (cached verifications included) and by
    /// the other nodes when they read the keyring change from the change log. A revoked
    /// signing key is replaced as by a rotation; a revoked next key by a fresh one. `None`
    /// for a `kid` the keyring does not hold. Logged as a warning (target `sessiond::audit`,
    /// type `key_revoked`); `by` is the operator request, for the log line.
    pub async fn revoke_key(
        &self,
        kid: &str,
        by: Option<&RequestContext>,
    ) -> CoreResult<Option<Vec<StoredKey>>> {
        let _one_at_a_time = self.rotation.lock().await;
        // From the keyring as stored: another node may have rotated since this one loaded it.
        let current = Keyring::load(&self.master, self.identity.load_keys().await?)?;
        let state = current
            .stored()
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.state);
        let Some(keys) = current.revoked(&self.master, self.cfg.signing_alg, kid, self.now())?
        else {
            // Not (or no longer) stored: make sure this node does not hold it either.
            self.install_keyring(current)?;
            return Ok(None);
        };
        let keyring = Keyring::load(&self.master, keys.clone())?;
        let signing = keyring.signing_kid().to_owned();
        self.identity.replace_keys(keys.clone()).await?;
        self.install_keyring(keyring)?;
        tracing::warn!(
            target: "sessiond::audit",
            r#type = "key_revoked",
            kid,
            state = state.map(KeyState::as_str),
            signing_kid = %signing,
            activity = by.map(|c| c.activity_id.as_str()),
            correlation = by.and_then(|c| c.correlation_id.as_deref()),
            ip = by.and_then(|c| c.ip.as_deref()),
            "signing key revoked: the tokens it signed are refused"
        );
        Ok(Some(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Cluster, login_alice, ok, until_trusted};

    fn signing(e: &Engine) -> String {
        ok(e.keys())
            .into_iter()
            .find(|k| k.state == KeyState::Signing)
            .map(|k| k.kid)
            .unwrap_or_default()
    }

    /// Two nodes over one store, each following its change log: a key revoked on one is
    /// refused by both, although each had the token's verification cached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoked_key_is_refused_here_at_once_and_by_the_other_node_on_reload() {
        let c = Cluster::start(2, Some(Duration::from_millis(400))).await;
        let ctx = c.with_alice().await;
        let (a, b) = (&c.nodes[0], &c.nodes[1]);
        until_trusted(b).await;
        let token = login_alice(a, &ctx).await.session_token;
        ok(a.authenticate(&ctx, &token).await);
        ok(b.authenticate(&ctx, &token).await);
        let old = signing(a);
        assert!(ok(a.revoke_key("no-such-kid", None).await).is_none());
        assert!(ok(a.revoke_key(&old, None).await).is_some());
        assert_ne!(signing(a), old);
        assert!(matches!(
            a.authenticate(&ctx, &token).await,
            Err(CoreError::TokenInvalid)
        ));
        for _ in 0..500 {
            match b.authenticate(&ctx, &token).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(CoreError::TokenInvalid) => {
                    assert_eq!(signing(b), signing(a));
                    return;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        panic!("node b still accepts a token of the revoked key");
    }

    /// A node that has not reloaded the keyring since another node revoked a key does not
    /// bring it back by rotating.
    #[tokio::test]
    async fn a_stale_node_rotating_does_not_bring_a_revoked_key_back() {
        let c = Cluster::start(2, None).await;
        let (a, b) = (&c.nodes[0], &c.nodes[1]);
        let old = signing(a);
        assert!(ok(a.revoke_key(&old, None).await).is_some());
        assert!(ok(b.keys()).iter().any(|k| k.kid == old), "b is stale");
        let rotated = ok(b.rotate_keys().await);
        assert!(rotated.iter().all(|k| k.kid != old));
        assert!(ok(c.store.load_keys().await).iter().all(|k| k.kid != old));
    }
}
