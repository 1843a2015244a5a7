-- A node's lease: renew it, claiming every lapsed one; or release it.
-- KEYS: 1 leases (node → expiry ms), 2 lapsed (node → lapse_ms:claimer)
-- ARGV: 1 this node, 2 op (renew|release), 3 now_ms, 4 expiry_ms (renew),
--       5 create (renew: 1 to take a lease this node does not hold)
-- renew returns strings {present, claimed, node, lapse_ms, …}: whether this node's
-- lease was still there, how many lapsed leases it claimed now, and every
-- lapsed node this node is to reap (claimed now or earlier, or left by a
-- claimer that lapsed or stopped before it finished). release returns 0.
local me, now = ARGV[1], tonumber(ARGV[3])
if ARGV[2] == 'release' then
  -- Stopping: whatever this node's connections did not uncount on their
  -- way out is reaped by a survivor, as of now.
  redis.call('HDEL', KEYS[1], me)
  redis.call('HSET', KEYS[2], me, ARGV[3] .. ':')
  return 0
end
if ARGV[5] ~= '1' and redis.call('HEXISTS', KEYS[1], me) == 0 then
  -- Claimed (or lost with the store's data): not taken again under this
  -- name, whose records a survivor reaps.
  return {'0', '0'}
end
local present = 1 - redis.call('HSET', KEYS[1], me, ARGV[4])
local claimed = 0
local leases = redis.call('HGETALL', KEYS[1])
for i = 1, #leases, 2 do
  if tonumber(leases[i + 1]) < now then
    redis.call('HDEL', KEYS[1], leases[i])
    redis.call('HSET', KEYS[2], leases[i], leases[i + 1] .. ':' .. me)
    claimed = claimed + 1
  end
end
local out = {tostring(present), tostring(claimed)}
local lapsed = redis.call('HGETALL', KEYS[2])
for i = 1, #lapsed, 2 do
  local at, by = string.match(lapsed[i + 1], '^(%d+):(.*)$')
  if at and by ~= me and not redis.call('HGET', KEYS[1], by) then
    redis.call('HSET', KEYS[2], lapsed[i], at .. ':' .. me)
    by = me
  end
  if by == me then
    out[#out + 1] = lapsed[i]
    out[#out + 1] = at
  end
end
return out
