-- Moves fans from the head of the waiting line to active until `capacity`
-- are active, no faster than the admission rate. Atomic: never above
-- capacity or the rate, nobody twice.
-- KEYS: 1 version, 2 waiting, 3 active (zset user->until), 4 entries, 5 epoch,
--       6 prequeue, 7 recent admissions (list, newest first), 8 tally (hash)
-- ARGV: 1 capacity, 2 ttl_ms, 3 now_ms, 4 show, 5 channel, 6 freed_ms (when the
-- slot was freed; carried in the changes for the activation latency metric),
-- 7 the epoch the caller knows (0: none), 8 admissions per minute (0: no rate)
-- Returns {epoch, changes_json|false, next_at_ms (0: none), unopened (0|1)}.
-- Admits nobody when the store's epoch is not the caller's (the caller
-- rebuilds first), while a rebuild holds admission, or while a pre-queue
-- waits to be opened.
--
-- The rate's pacing is RatePace's (src/store/mod.rs): an admission needs now
-- to have reached the next slot (epoch field next_slot, 60 s / rate apart on
-- a fixed grid) and fewer than `rate` admissions in the last 60 s.
local epoch = epoch_of(KEYS[5])
if ARGV[7] ~= '0' and tonumber(ARGV[7]) ~= epoch then
  return {int(epoch), false, 0, 0}
end
local now = tonumber(ARGV[3])
local hold = redis.call('HGET', KEYS[5], 'hold_until')
if hold and tonumber(hold) > now then
  return {int(epoch), false, 0, 0}
end
if redis.call('ZCARD', KEYS[6]) > 0 then
  return {int(epoch), false, 0, 1}
end
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[8])
local till = now + tonumber(ARGV[2])
local active = redis.call('ZCARD', KEYS[3])
local changes = {}
local next_at = 0
local next_slot = tonumber(redis.call('HGET', KEYS[5], 'next_slot') or '0')
while active < capacity and redis.call('ZCARD', KEYS[2]) > 0 do
  if rate > 0 then
    local at = math.max(now, math.ceil(next_slot))
    if redis.call('LLEN', KEYS[7]) >= rate then
      at = math.max(at, tonumber(redis.call('LINDEX', KEYS[7], rate - 1)) + 60000)
    end
    if now < at then
      next_at = at
      break
    end
    local interval = 60000 / rate
    -- Behind the grid by less than the catch-up (RATE_CATCH_UP_MS): keep it.
    if next_slot > 0 and now < next_slot + math.max(interval, 100) then
      next_slot = next_slot + interval
    else
      next_slot = now + interval
    end
    redis.call('LPUSH', KEYS[7], now)
    redis.call('LTRIM', KEYS[7], 0, rate - 1)
  end
  local head = redis.call('ZPOPMIN', KEYS[2])
  local user = head[1]
  -- The session is named by the fan's spot (which their ticket names),
  -- whatever their place in line was.
  local seq = string.match(redis.call('HGET', KEYS[4], user) or '', '^w:(%d+):')
  if seq then
    redis.call('ZADD', KEYS[3], till, user)
    redis.call('HSET', KEYS[4], user, 'a:' .. seq .. ':' .. till)
    local v = redis.call('INCR', KEYS[1])
    changes[#changes + 1] = {v = v, k = 'a', u = tonumber(user), seq = seq, t = till, f = tonumber(ARGV[6])}
    active = active + 1
  end
end
if rate > 0 then
  redis.call('HSET', KEYS[5], 'next_slot', string.format('%.3f', next_slot))
end
if #changes == 0 then
  return {int(epoch), false, int(next_at), 0}
end
redis.call('HINCRBY', KEYS[8], 'admitted', #changes)
local msg = encode({show = tonumber(ARGV[4]), e = epoch, changes = changes})
redis.call('PUBLISH', ARGV[5], msg)
return {int(epoch), msg, int(next_at), 0}
