-- A consistent picture of one show's queue, for a node's live view to
-- resynchronise from.
-- KEYS: 1 version, 2 entries, 3 ended
-- Returns {version, entries (flat user, entry, ...), ended (flat user, reason, ...)}
return {
  tonumber(redis.call('GET', KEYS[1]) or '0'),
  redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3]),
}
