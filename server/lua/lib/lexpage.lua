-- lib/lexpage.lua - not a script: one page of a sorted set whose scores are
-- all 0 (so BYLEX is its order, bytewise), for the list scripts (tpl_list,
-- supp_page).
-- lexpage(key, after, lim) - at most lim members after `after` ("": from the
-- first), and the page's last member when more follow, else "".
local function lexpage(key, after, lim)
  local min = '-'
  if after ~= '' then min = '(' .. after end
  local names = redis.call('ZRANGEBYLEX', key, min, '+', 'LIMIT', 0, lim + 1)
  local nxt = ''
  if #names > lim then
    nxt = names[lim]
    names[lim + 1] = nil
  end
  return names, nxt
end
