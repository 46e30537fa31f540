//! The Lua scripts: each one read-modify-write of one route, on one slot. `lua/common.lua`
//! (record helpers and the change-log append) is put in front of each.

use redis::Script;
use std::sync::LazyLock;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/common.lua"),
                "\n",
                include_str!($file)
            ))
        });
    };
}

script!(CREATE, "lua/create.lua");
script!(ROTATE, "lua/rotate.lua");
script!(REVOKE, "lua/revoke.lua");
script!(REVOKE_USER, "lua/revoke_user.lua");
script!(MARK_EXPIRED, "lua/mark_expired.lua");
script!(EXPIRE, "lua/expire.lua");
script!(TOUCH, "lua/touch.lua");
script!(REAUTHENTICATE, "lua/reauthenticate.lua");
script!(NONCE, "lua/nonce.lua");
script!(COUNTER, "lua/counter.lua");
script!(PRUNE, "lua/prune.lua");
script!(INDEX, "lua/index.lua");
script!(MARK, "lua/mark.lua");
