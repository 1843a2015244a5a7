-- Liveness of a waiting entry: attach, detach, touch, or register.
-- KEYS: 1 entries, 2 this node's connections in the show (user:seq → count)
-- ARGV: 1 user, 2 op (attach|detach|touch|register), 3 now_ms,
--       4 seq (detach, register), 5 count (register)
-- Returns the entry's seq for attach, or false.
--
-- An entry's live count is the sum of the nodes' counts for user:seq, each
-- node's kept beside the entry in the same slot and changed in the same
-- call: a connection is counted once, and uncounted once, by its detach or
-- by a survivor reaping a lapsed node (reap.lua), whichever comes first.
local entry = redis.call('HGET', KEYS[1], ARGV[1])
local kind, seq, live, seen
if entry then
  kind, seq, live, seen = string.match(entry, '^(%a):(%d+):(%d+):(%d+)$')
end
local waiting = kind == 'w'
local op = ARGV[2]
if op == 'detach' or op == 'register' then
  local field = ARGV[1] .. ':' .. ARGV[4]
  local held = tonumber(redis.call('HGET', KEYS[2], field) or '0')
  local count = 0
  if op == 'register' then
    count = tonumber(ARGV[5])
  elseif held == 0 then
    -- Reaped already (this node's lease had lapsed): nothing left to uncount.
    return false
  else
    count = held - 1
  end
  if count > 0 and (op == 'detach' or (waiting and seq == ARGV[4])) then
    redis.call('HSET', KEYS[2], field, count)
  else
    redis.call('HDEL', KEYS[2], field)
    count = 0
  end
  if not waiting or seq ~= ARGV[4] then
    return false
  end
  live = math.max(tonumber(live) + count - held, 0)
  if op == 'detach' then
    -- A retried detach may come after a later sighting: keep the latest.
    seen = math.max(tonumber(seen), tonumber(ARGV[3]))
  end
elseif not waiting then
  return false
elseif op == 'attach' then
  live = tonumber(live) + 1
  redis.call('HINCRBY', KEYS[2], ARGV[1] .. ':' .. seq, 1)
else
  seen = math.max(tonumber(seen), tonumber(ARGV[3]))
end
redis.call('HSET', KEYS[1], ARGV[1], 'w:' .. seq .. ':' .. live .. ':' .. seen)
return tonumber(seq)
