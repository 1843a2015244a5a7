-- A consistent picture of one show's queue, for a node's live view to
-- resynchronise from.
-- KEYS: 1 version, 2 entries, 3 ended, 4 epoch
-- Returns {epoch (0: none), version, entries (flat user, entry, ...), ended (flat user, reason, ...)}
return {
  redis.call('HGET', KEYS[4], 'id') or '0',
  tonumber(redis.call('GET', KEYS[1]) or '0'),
  redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3]),
}
