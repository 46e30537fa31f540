//! The keyring: JWKS, rotation, reloads.

use super::*;

impl Engine {
    /// Reads the keyring from the identity store again (another node rotated it).
    pub(crate) async fn reload_keyring(&self) -> CoreResult<()> {
        let keyring = Keyring::load(&self.master, self.identity.load_keys().await?)?;
        *self
            .keyring
            .write()
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))? = Arc::new(keyring);
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
        let rotated = self
            .keyring()?
            .rotated(&self.master, self.cfg.signing_alg, self.now())?;
        let keyring = Keyring::load(&self.master, rotated.clone())?;
        self.identity.replace_keys(rotated.clone()).await?;
        *self
            .keyring
            .write()
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))? = Arc::new(keyring);
        Ok(rotated)
    }
}
