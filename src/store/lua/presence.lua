-- Liveness of waiting entries: attach, detach, touch, or register, for one
-- fan or a batch of them (a node's connections closing at once are detached
-- in one call).
-- KEYS: 1 entries, 2 this node's connections in the show (user:seq → count)
-- ARGV: 1 op (attach|detach|touch|register), then per fan four: user,
--       now_ms, seq (detach, register), count (register)
-- Returns one number per fan: the seq of the fan's waiting entry (for detach
-- and register, the one named), or 0 when there is none.
--
-- An entry's live count is the sum of the nodes' counts for user:seq, each
-- node's kept beside the entry in the same slot and changed in the same
-- call: a connection is counted once, and uncounted once, by its detach or
-- by a survivor reaping a lapsed node (reap.lua), whichever comes first.
local function presence(op, user, now, given_seq, given_count)
  local entry = redis.call('HGET', KEYS[1], user)
  local kind, seq, live, seen
  if entry then
    kind, seq, live, seen = string.match(entry, '^(%a):(%d+):(%d+):(%d+)$')
  end
  local waiting = kind == 'w'
  if op == 'detach' or op == 'register' then
    local field = user .. ':' .. given_seq
    local held = tonumber(redis.call('HGET', KEYS[2], field) or '0')
    local count = 0
    if op == 'register' then
      count = tonumber(given_count)
    elseif held == 0 then
      -- Reaped already (this node's lease had lapsed): nothing left to uncount.
      return 0
    else
      count = held - 1
    end
    if count > 0 and (op == 'detach' or (waiting and seq == given_seq)) then
      redis.call('HSET', KEYS[2], field, count)
    else
      redis.call('HDEL', KEYS[2], field)
      count = 0
    end
    if not waiting or seq ~= given_seq then
      return 0
    end
    live = math.max(tonumber(live) + count - held, 0)
    if op == 'detach' then
      -- A retried detach may come after a later sighting: keep the latest.
      seen = math.max(tonumber(seen), tonumber(now))
    end
  elseif not waiting then
    return 0
  elseif op == 'attach' then
    live = tonumber(live) + 1
    redis.call('HINCRBY', KEYS[2], user .. ':' .. seq, 1)
  else
    seen = math.max(tonumber(seen), tonumber(now))
  end
  redis.call('HSET', KEYS[1], user, 'w:' .. seq .. ':' .. live .. ':' .. seen)
  return tonumber(seq)
end

local op = ARGV[1]
local answers = {}
for i = 2, #ARGV, 4 do
  answers[#answers + 1] = presence(op, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
end
return answers
