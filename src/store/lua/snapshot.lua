-- A consistent picture of one show's queue, for a node's live view to
-- resynchronise from.
-- KEYS: 1 version, 2 entries, 3 ended, 4 epoch, 5 waiting, 6 prequeue
-- Returns {epoch (0: none), version, entries (flat user, entry, ...), ended
-- (flat user, reason, ...), the line (flat user, position, ... in order), the
-- pre-queue (the same, in its drawn order)}
return {
  redis.call('HGET', KEYS[4], 'id') or '0',
  tonumber(redis.call('GET', KEYS[1]) or '0'),
  redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3]),
  redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES'),
}
