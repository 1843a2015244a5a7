//! A Lua script's call, written once into the command that carries it.
//!
//! `redis::ScriptInvocation` keeps every key and argument in a buffer of its
//! own and copies them all into the `EVALSHA` command when it is sent: an
//! allocation per key and argument, and a join passes 23 (a fifth of a
//! join's allocations in the gateway). A [`ScriptCall`] writes keys and
//! arguments into two command buffers and both into the `EVALSHA` once.
//! Otherwise it behaves the same: a server that does not know the script
//! (restarted, flushed, a new primary after a failover) is sent it and
//! asked again.

use redis::aio::ConnectionLike;
use redis::{
    Arg, Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind, ToRedisArgs,
};

/// Room for a typical call's keys or arguments (a join's eleven keys are
/// about 300 bytes), so neither buffer grows as it is written.
const ROOM: (usize, usize) = (16, 512);

/// A call of `script` being built: `key` and `arg` in any order, as with
/// `redis::Script::key` and `arg`, then [`ScriptCall::invoke_async`].
#[derive(Debug)]
pub struct ScriptCall<'a> {
    script: &'a Script,
    keys: Cmd,
    args: Cmd,
}

impl<'a> ScriptCall<'a> {
    pub fn new(script: &'a Script) -> Self {
        Self {
            script,
            keys: Cmd::with_capacity(ROOM.0, ROOM.1),
            args: Cmd::with_capacity(ROOM.0, ROOM.1),
        }
    }

    /// Adds `KEYS[i]`.
    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        self.keys.arg(key);
        self
    }

    /// Adds `ARGV[i]`.
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.args.arg(arg);
        self
    }

    /// Runs the script by its hash, loading it first if the server does not
    /// have it.
    pub async fn invoke_async<T: FromRedisValue>(
        &self,
        con: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        let eval = self.eval_cmd();
        match eval.query_async(con).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(con).await?;
                eval.query_async(con).await
            }
            answer => answer,
        }
    }

    fn eval_cmd(&self) -> Cmd {
        let (keys, args) = (self.keys.args_iter(), self.args.args_iter());
        let count = keys.len();
        let bytes = keys
            .clone()
            .chain(args.clone())
            .map(|a| match a {
                Arg::Simple(b) => b.len(),
                _ => 0,
            })
            .sum::<usize>();
        let hash = self.script.get_hash();
        let mut eval = Cmd::with_capacity(3 + count + args.len(), bytes + hash.len() + 16);
        eval.arg("EVALSHA").arg(hash).arg(count);
        // Only `Arg::Simple` is written by `key` and `arg` (a cursor is a
        // `SCAN`'s).
        for a in keys.chain(args) {
            if let Arg::Simple(b) = a {
                eval.arg(b);
            }
        }
        eval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_is_the_same_command_as_redis_own() {
        let script = Script::new("return {KEYS[1], ARGV[1]}");
        let ours = {
            let mut call = ScriptCall::new(&script);
            // Keys and arguments in any order, as with `ScriptInvocation`.
            call.arg(7).key("a").arg("x y").key("b:{c}");
            call.eval_cmd()
        };
        let expected = format!(
            "*7\r\n$7\r\nEVALSHA\r\n$40\r\n{}\r\n$1\r\n2\r\n$1\r\na\r\n$5\r\nb:{{c}}\r\n$1\r\n7\r\n$3\r\nx y\r\n",
            script.get_hash()
        );
        assert_eq!(
            String::from_utf8(ours.get_packed_command()).expect("text"),
            expected
        );
    }
}
