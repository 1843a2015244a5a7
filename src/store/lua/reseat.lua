-- Puts lost spots back (see QueueStore::reseat): idempotent, never over an
-- entry or an ended record, only spots from an earlier epoch.
-- KEYS: 1 seq, 2 version, 3 waiting, 4 active, 5 entries, 6 ended, 7 epoch,
--       8 prequeue, 9 the demand ranking
-- ARGV: 1 now_ms, 2 show, 3 channel, 4 hold_ms (0: none), then four per spot:
--       kind (w|p|a|e), user, seq (w, p) or session (a) or reason (e),
--       until_ms (a), position in line (w; 0: the seq), a draw (p: below
--       2^40, its place in the pre-queue's drawn order, as join.lua), or how
--       long the ended record is kept (e)
-- Returns {epoch, restored users (flat), hold_ms_left, changes_json|false}
local epoch, floor = epoch_init(KEYS[7], KEYS[1])
local now = tonumber(ARGV[1])
local changes, restored = {}, {}
local i = 5
while i + 3 <= #ARGV do
  local kind, user, seq, till = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local free = redis.call('HEXISTS', KEYS[5], user) == 0
    and redis.call('HEXISTS', KEYS[6], user) == 0
  local lost = free and kind ~= 'e' and tonumber(seq) < floor
  if free and kind == 'e' then
    -- A remembered end: not a spot, so not counted as restored.
    redis.call('HSET', KEYS[6], user, seq)
    redis.call('PEXPIRE', KEYS[6], till)
  elseif lost and kind == 'w' then
    local pos = seq
    if till ~= '0' then
      pos = till
    end
    redis.call('ZADD', KEYS[3], pos, user)
    redis.call('HSET', KEYS[5], user, 'w:' .. seq .. ':0:' .. ARGV[1])
    local v = redis.call('INCR', KEYS[2])
    changes[#changes + 1] = {v = v, k = 'j', u = tonumber(user), seq = seq, p = pos}
    restored[#restored + 1] = user
  elseif lost and kind == 'p' then
    -- Back in the pre-queue, drawn afresh (the new place at the end is one
    -- of this epoch: above every position in it); or, if it was opened
    -- since, in line at the spot.
    local q, pos, displaced, last = 1, nil, nil, nil
    if redis.call('HGET', KEYS[7], 'opened') then
      redis.call('ZADD', KEYS[3], seq, user)
      q = 0
    else
      last = int(redis.call('INCR', KEYS[1]))
      pos, displaced = draw_place(KEYS[8], user, last, till)
    end
    redis.call('HSET', KEYS[5], user, 'w:' .. seq .. ':0:' .. ARGV[1])
    local v = redis.call('INCR', KEYS[2])
    changes[#changes + 1] = {v = v, k = 'j', u = tonumber(user), seq = seq, q = q,
      p = pos, d = displaced and tonumber(displaced), dp = displaced and last}
    restored[#restored + 1] = user
  elseif lost and kind == 'a' and tonumber(till) > now then
    redis.call('ZADD', KEYS[4], till, user)
    redis.call('HSET', KEYS[5], user, 'a:' .. seq .. ':' .. till)
    local v = redis.call('INCR', KEYS[2])
    changes[#changes + 1] = {v = v, k = 'a', u = tonumber(user), seq = seq, t = tonumber(till)}
    restored[#restored + 1] = user
  end
end
if #restored > 0 then
  rank_demand(KEYS[9], ARGV[2], KEYS[3], KEYS[8], KEYS[4])
end
if #restored > 0 and ARGV[4] ~= '0' then
  redis.call('HSETNX', KEYS[7], 'hold_until', int(now + tonumber(ARGV[4])))
end
local left = 0
local hold = redis.call('HGET', KEYS[7], 'hold_until')
if hold and tonumber(hold) > now then
  left = tonumber(hold) - now
end
local msg = false
if #changes > 0 then
  msg = encode({show = tonumber(ARGV[2]), e = epoch, changes = changes})
  redis.call('PUBLISH', ARGV[3], msg)
end
return {int(epoch), restored, left, msg}
