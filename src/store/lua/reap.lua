-- Uncounts a lapsed node's connections in one show, as of its lapse: the
-- fans it held are then absent since then, and the abandonment grace runs
-- from the lapse. Takes the node's record, so running it twice (two
-- survivors, or a retry) reaps nothing the second time.
-- KEYS: 1 entries, 2 the lapsed node's connections in the show
-- ARGV: 1 lapse_ms
-- Returns user, count, … for the waiting entries it changed.
local lapse = tonumber(ARGV[1])
local held = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[2])
local reaped = {}
for i = 1, #held, 2 do
  local user, seq = string.match(held[i], '^(%d+):(%d+)$')
  local count = tonumber(held[i + 1])
  local entry = user and redis.call('HGET', KEYS[1], user)
  if entry and count > 0 then
    local kind, eseq, live, seen = string.match(entry, '^(%a):(%d+):(%d+):(%d+)$')
    if kind == 'w' and eseq == seq then
      live = math.max(tonumber(live) - count, 0)
      seen = math.max(tonumber(seen), lapse)
      redis.call('HSET', KEYS[1], user, 'w:' .. seq .. ':' .. live .. ':' .. seen)
      reaped[#reaped + 1] = tonumber(user)
      reaped[#reaped + 1] = count
    end
  end
end
return reaped
