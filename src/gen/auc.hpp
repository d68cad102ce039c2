// Exact AUC for the generator's oracle score. Private to src/gen (and its tests).
#pragma once

#include <vector>

namespace sluice::gen_detail {

// Exact AUC (Mann-Whitney U / (n1 n0), a tie counts one half) of signed scores: +p for a positive
// row, -p for a negative one, every p > 0. Reorders v. NaN when either class is empty.
double auc_of_signed(std::vector<double>& v);

}  // namespace sluice::gen_detail
