import Foundation

extension GaussianSplatting {
    /// Per-Gaussian screen-space gradient record: conic (a, b, c), mean (u, v), opacity, rgb, z.
    static let screenWidth = 10

    /// dL/d(parameters) given dL/dcolor (3*W*H), and optionally dL/ddepth and dL/dalpha (W*H each), for the render
    /// `render` of `g` with `camera` (the same ones). The tile size is the render's; `options.background` must be
    /// the render's background.
    ///
    /// Per pixel, front to back over its contributors (T_i as in the forward pass, so every decision repeats it
    /// exactly), with f_i = gc·c_i + gd z_i + ga and S_i = Σ_(j>i) w_j f_j + T_final gc·bg, run down from the
    /// forward's sums S_0 = gc·(Σ w c + T_final bg) + gd Σ w z + ga (1 - T_final) as S_i = S_(i-1) - w_i f_i:
    ///     dL/dc_i = w_i gc,  dL/dz_i += w_i gd,  dL/dα_i = T_i f_i - S_i / (1 - α_i)
    /// then α = o G (0 when clamped at 0.99), G = exp(power), to the conic, the 2D mean and the opacity, and per
    /// Gaussian through the projection (conic = Σ'⁻¹, Σ' = V Vᵀ + 0.3 I, V = J R_CW R S) to the parameters.
    public static func backward(_ g: GaussianSet, camera: SplatCamera, render: SplatRender,
                                gradColor: [Float], gradDepth: [Float]?, gradAlpha: [Float]?,
                                options: SplatOptions = .init()) -> GaussianGradients {
        let n = g.count, w = render.width, h = render.height, ts = render.tileSize
        precondition(g.isConsistent && n == render.gaussianCount,
                     "GaussianSplatting.backward: \(n) Gaussians, the render was made with \(render.gaussianCount)")
        precondition(w == camera.width && h == camera.height, "GaussianSplatting.backward: camera size differs from the render")
        precondition(gradColor.count == 3 * w * h, "GaussianSplatting.backward: gradColor needs 3*W*H values")
        precondition((gradDepth?.count ?? w * h) == w * h && (gradAlpha?.count ?? w * h) == w * h,
                     "GaussianSplatting.backward: gradDepth / gradAlpha need W*H values")
        let tilesX = (w + ts - 1) / ts, tiles = render.tileStart.count - 1
        let workers = max(1, min(options.threads, tiles))
        var screen = [Float](repeating: 0, count: workers * screenWidth * n)
        let zeros = (gradDepth == nil || gradAlpha == nil) ? [Float](repeating: 0, count: w * h) : []
        let bg = options.background
        screen.withUnsafeMutableBufferPointer { scr in
        render.packed.withUnsafeBufferPointer { pk in
        render.boxes.withUnsafeBufferPointer { bx in
        render.tileStart.withUnsafeBufferPointer { tStart in
        render.tileList.withUnsafeBufferPointer { tList in
        render.finalT.withUnsafeBufferPointer { fT in
        render.lastCount.withUnsafeBufferPointer { lc in
        render.sums.withUnsafeBufferPointer { sm in
        gradColor.withUnsafeBufferPointer { gc in
        (gradDepth ?? zeros).withUnsafeBufferPointer { gd in
        (gradAlpha ?? zeros).withUnsafeBufferPointer { ga in
            let scene = TileScene(packed: pk.baseAddress!, boxes: bx.baseAddress!, tileStart: tStart.baseAddress!,
                                  tileList: tList.baseAddress!, width: w, height: h, tileSize: ts, tilesX: tilesX)
            let upstream = Upstream(color: gc.baseAddress!, depth: gd.baseAddress!, alpha: ga.baseAddress!,
                                    finalT: fT.baseAddress!, lastCount: lc.baseAddress!, sums: sm.baseAddress!)
            Parallel.forEachChunk(count: workers, threads: workers) { worker, _ in
                let scratch = TileScratch(tileSize: ts)
                defer { scratch.deallocate() }
                let grads = scr.baseAddress! + worker * screenWidth * n
                for t in stride(from: worker, to: tiles, by: workers) {
                    backwardTile(scene, t, scratch, bg, upstream, grads)
                }
            }
        }}}}}}}}}}}
        // Worker buffers summed in worker order (deterministic for a given thread count).
        if workers > 1 {
            screen.withUnsafeMutableBufferPointer { scr in
                let base = scr.baseAddress!, len = screenWidth * n
                Parallel.forEachChunk(count: len, threads: options.threads, alignment: 64) { _, range in
                    for k in range {
                        var s = base[k]
                        for wk in 1..<workers { s += base[wk * len + k] }
                        base[k] = s
                    }
                }
            }
        }
        var out = GaussianGradients(means: .init(repeating: 0, count: 3 * n), logScales: .init(repeating: 0, count: 3 * n),
                                    rotations: .init(repeating: 0, count: 4 * n), opacityLogits: .init(repeating: 0, count: n),
                                    colors: .init(repeating: 0, count: 3 * n), screenMeans: .init(repeating: 0, count: 2 * n))
        let wRows = cameraRows(camera)
        out.means.withUnsafeMutableBufferPointer { gm in
        out.logScales.withUnsafeMutableBufferPointer { gs in
        out.rotations.withUnsafeMutableBufferPointer { gq in
        out.opacityLogits.withUnsafeMutableBufferPointer { go in
        out.colors.withUnsafeMutableBufferPointer { gcol in
        out.screenMeans.withUnsafeMutableBufferPointer { gsm in
        screen.withUnsafeBufferPointer { scr in
        render.radii.withUnsafeBufferPointer { radii in
            Parallel.forEachChunk(count: n, threads: options.threads, alignment: 64) { _, range in
                for i in range where radii[i] > 0 {
                    let sg = scr.baseAddress! + screenWidth * i
                    let o = render.packed[packedWidth * i + 5]
                    gcol[3 * i] = sg[6]; gcol[3 * i + 1] = sg[7]; gcol[3 * i + 2] = sg[8]
                    go[i] = sg[5] * o * (1 - o) // sigmoid'
                    gsm[2 * i] = sg[3]; gsm[2 * i + 1] = sg[4]
                    guard let pr = project(g, i, camera, wRows) else { continue }
                    let (dMean, dLogScale, dQuat) = projectionBackward(pr, camera, wRows, conicGrad: (sg[0], sg[1], sg[2]),
                                                                     meanGrad: (sg[3], sg[4]), depthGrad: sg[9])
                    gm[3 * i] = dMean.x; gm[3 * i + 1] = dMean.y; gm[3 * i + 2] = dMean.z
                    gs[3 * i] = dLogScale.x; gs[3 * i + 1] = dLogScale.y; gs[3 * i + 2] = dLogScale.z
                    gq[4 * i] = dQuat.x; gq[4 * i + 1] = dQuat.y; gq[4 * i + 2] = dQuat.z; gq[4 * i + 3] = dQuat.w
                }
            }
        }}}}}}}}
        return out
    }

    struct Upstream {
        let color: UnsafePointer<Float>, depth: UnsafePointer<Float>, alpha: UnsafePointer<Float>
        let finalT: UnsafePointer<Float>, lastCount: UnsafePointer<Int32>, sums: UnsafePointer<Float>
    }

    /// Front-to-back traversal of tile t up to its last contributor, Gaussian by Gaussian over the runs of `laneCount` pixels of
    /// its box rows (the forward pass's arithmetic and decisions), adding each Gaussian's screen-space gradient
    /// record to `grads`.
    static func backwardTile(_ s: TileScene, _ tile: Int, _ sc: TileScratch, _ bg: SIMD3<Float>, _ up: Upstream,
                             _ grads: UnsafeMutablePointer<Float>) {
        let (tx0, tx1, ty0, ty1) = s.rect(tile)
        let cpr = sc.chunksPerRow
        let chunks = (ty1 - ty0) * cpr
        let tP = sc.plane(0, chunks), sP = sc.plane(1, chunks), g0P = sc.plane(2, chunks), g1P = sc.plane(3, chunks)
        let g2P = sc.plane(4, chunks), gdP = sc.plane(5, chunks), gaP = sc.plane(6, chunks)
        tP.update(repeating: FL(repeating: 1), count: chunks)
        // All seven planes are contiguous; the padding lanes stay 0 (last = 0: never composited).
        sP.update(repeating: .zero, count: 6 * chunks)
        sc.last.update(repeating: .zero, count: chunks)
        let fl = UnsafeMutableRawPointer(sc.f).assumingMemoryBound(to: Float.self)
        let pl = laneCount * chunks // floats per plane
        let lF = UnsafeMutableRawPointer(sc.last).assumingMemoryBound(to: Int32.self)
        var maxLast: Int32 = 0
        for py in ty0..<ty1 {
            for px in tx0..<tx1 {
                let q = (py - ty0) * laneCount * cpr + px - tx0, o = py * s.width + px
                let t = up.finalT[o]
                let g0 = up.color[3 * o], g1 = up.color[3 * o + 1], g2 = up.color[3 * o + 2]
                let gd = up.depth[o], ga = up.alpha[o]
                let sm = up.sums + 4 * o
                fl[pl + q] = g0 * (sm[0] + t * bg.x) + g1 * (sm[1] + t * bg.y) + g2 * (sm[2] + t * bg.z) + gd * sm[3]
                    + ga * (1 - t)
                fl[2 * pl + q] = g0; fl[3 * pl + q] = g1; fl[4 * pl + q] = g2; fl[5 * pl + q] = gd; fl[6 * pl + q] = ga
                let last = up.lastCount[o]
                lF[q] = last
                maxLast = max(maxLast, last)
            }
        }
        let start = Int(s.tileStart[tile])
        let aMax = FL(repeating: alphaMax)
        for k in 0..<Int(maxLast) {
            let gi = Int(s.tileList[start + k])
            let p = s.packed + packedWidth * gi, b = s.boxes + 4 * gi
            let x0 = max(tx0, Int(b[0])), x1 = min(tx1 - 1, Int(b[1]))
            let y0 = max(ty0, Int(b[2])), y1 = min(ty1 - 1, Int(b[3]))
            guard x0 <= x1 && y0 <= y1 else { continue }
            let u = p[0], v = p[1], cA = p[2], cB = p[3], cC = p[4]
            let o = FL(repeating: p[5]), floor = FL(repeating: p[10])
            let cr = p[6], cg = p[7], cbl = p[8], gz = p[9]
            let entry = IL(repeating: Int32(k))
            let c0 = (x0 - tx0) >> laneShift, c1 = (x1 - tx0) >> laneShift
            let lo = FL(repeating: Float(x0)), hi = FL(repeating: Float(x1))
            // Σ over pixels of dL/dpower times dx², dx dy, dy², dx, dy; dL/do; w times gc r, g, b, gd.
            var sxx = FL.zero, sxy = FL.zero, syy = FL.zero, sx = FL.zero, sy = FL.zero, dO = FL.zero
            var dR = FL.zero, dG = FL.zero, dBl = FL.zero, dZ = FL.zero
            var touched = false
            for py in y0...y1 {
                let dy = v - Float(py)
                let rowB = cB * dy, rowC = cC * dy * dy
                let row = (py - ty0) * cpr
                for c in c0...c1 {
                    let q = row + c
                    let px = FL(repeating: Float(tx0 + laneCount * c)) + lanes
                    let dx = u - px
                    let power = (cA * dx + rowB) * dx + rowC
                    let m = (power .>= floor) .& (px .>= lo) .& (px .<= hi) .& (entry .< sc.last[q])
                    if !anyLane(m) { continue }
                    touched = true
                    let gauss = expLanes(power)
                    let raw = o * gauss
                    let a = clampAlpha(raw)
                    let oneMinus = 1 - a
                    let t = tP[q]
                    let g0 = g0P[q], g1 = g1P[q], g2 = g2P[q], gd = gdP[q]
                    let f = g0 * cr + g1 * cg + g2 * cbl + gd * gz + gaP[q]
                    let wgt = (a * t).replacing(with: 0, where: .!m)
                    let rest = sP[q] - wgt * f
                    sP[q] = rest
                    tP[q] = t.replacing(with: t * oneMinus, where: m)
                    dR += wgt * g0; dG += wgt * g1; dBl += wgt * g2; dZ += wgt * gd
                    // Clamped at 0.99: no gradient through α.
                    let dAlpha = (t * f - rest / oneMinus).replacing(with: 0, where: .!(m .& (raw .< aMax)))
                    dO += dAlpha * gauss
                    let dPower = dAlpha * a
                    let px1 = dPower * dx, py1 = dPower * dy
                    sx += px1; sy += py1; sxx += px1 * dx; sxy += px1 * dy; syy += py1 * dy
                }
            }
            if touched {
                // power = A dx² + B dx dy + C dy² = -½(a dx² + c dy²) - b dx dy with conic (a, b, c), d = (u, v) - px.
                let ca = -2 * cA, cb = -cB, cc = -2 * cC
                let gx = sx.sum(), gy = sy.sum()
                let gr = grads + screenWidth * gi
                gr[0] -= 0.5 * sxx.sum(); gr[1] -= sxy.sum(); gr[2] -= 0.5 * syy.sum()
                gr[3] -= ca * gx + cb * gy; gr[4] -= cb * gx + cc * gy
                gr[5] += dO.sum(); gr[6] += dR.sum(); gr[7] += dG.sum(); gr[8] += dBl.sum(); gr[9] += dZ.sum()
            }
        }
    }

    /// Chain rule from the screen-space gradients (conic a, b, c where power = -½(a dx² + c dy²) - b dx dy;
    /// 2D mean; view depth) through the projection to mean, log-scales and the raw quaternion.
    static func projectionBackward(_ pr: Projection, _ camera: SplatCamera,
                                   _ w: (SIMD3<Float>, SIMD3<Float>, SIMD3<Float>),
                                   conicGrad: (Float, Float, Float), meanGrad: (Float, Float), depthGrad: Float)
        -> (SIMD3<Float>, SIMD3<Float>, SIMD4<Float>)
    {
        // conic K = Σ'⁻¹: dL/dΣ' = -K G_K K with G_K the matrix gradient (off-diagonals take half of dL/db).
        let det = pr.a * pr.c - pr.b * pr.b
        let k0 = pr.c / det, k1 = -pr.b / det, k2 = pr.a / det
        let gA = conicGrad.0, gB = 0.5 * conicGrad.1, gC = conicGrad.2
        let p00 = gA * k0 + gB * k1, p01 = gA * k1 + gB * k2
        let p10 = gB * k0 + gC * k1, p11 = gB * k1 + gC * k2
        let s00 = -(k0 * p00 + k1 * p10), s01 = -(k0 * p01 + k1 * p11), s11 = -(k1 * p01 + k2 * p11)
        // Σ' = V Vᵀ + 0.3 I: dL/dV = 2 G_Σ' V.
        let dv0 = 2 * (s00 * pr.v0 + s01 * pr.v1), dv1 = 2 * (s01 * pr.v0 + s11 * pr.v1)
        // V = T M, M = R S (rows M_k = R_k * s): dL/dT = dV Mᵀ, dL/dM = Tᵀ dV.
        let m0 = pr.r.0 * pr.s, m1 = pr.r.1 * pr.s, m2 = pr.r.2 * pr.s
        let dt0 = SIMD3<Float>((dv0 * m0).sum(), (dv0 * m1).sum(), (dv0 * m2).sum())
        let dt1 = SIMD3<Float>((dv1 * m0).sum(), (dv1 * m1).sum(), (dv1 * m2).sum())
        let dm0 = pr.t0.x * dv0 + pr.t1.x * dv1, dm1 = pr.t0.y * dv0 + pr.t1.y * dv1
        let dm2 = pr.t0.z * dv0 + pr.t1.z * dv1
        let dr0 = dm0 * pr.s, dr1 = dm1 * pr.s, dr2 = dm2 * pr.s
        let ds = dm0 * pr.r.0 + dm1 * pr.r.1 + dm2 * pr.r.2
        let dLogScale = ds * pr.s
        // R(q) for unit q = (w, x, y, z), then through q = q_raw / |q_raw|.
        let (qw, qx, qy, qz) = (pr.q.x, pr.q.y, pr.q.z, pr.q.w)
        let dqw = 2 * (-qz * dr0.y + qy * dr0.z + qz * dr1.x - qx * dr1.z - qy * dr2.x + qx * dr2.y)
        let dqx = 2 * (qy * dr0.y + qz * dr0.z + qy * dr1.x - 2 * qx * dr1.y - qw * dr1.z + qz * dr2.x + qw * dr2.y
            - 2 * qx * dr2.z)
        let dqy = 2 * (-2 * qy * dr0.x + qx * dr0.y + qw * dr0.z + qx * dr1.x + qz * dr1.z - qw * dr2.x + qz * dr2.y
            - 2 * qy * dr2.z)
        let dqz = 2 * (-2 * qz * dr0.x - qw * dr0.y + qx * dr0.z + qw * dr1.x - 2 * qz * dr1.y + qy * dr1.z
            + qx * dr2.x + qy * dr2.y)
        let dqn = SIMD4<Float>(dqw, dqx, dqy, dqz)
        let dq = (dqn - pr.q * (pr.q * dqn).sum()) / pr.qNorm
        // T = J R_CW (rows T_0 = J00 W_0 + J02 W_2, T_1 = J11 W_1 + J12 W_2).
        let dj00 = (dt0 * w.0).sum(), dj02 = (dt0 * w.2).sum()
        let dj11 = (dt1 * w.1).sum(), dj12 = (dt1 * w.2).sum()
        let z = pr.pC.z, invZ = 1 / z, invZ2 = invZ * invZ
        let fx = camera.fx, fy = camera.fy
        var dp = SIMD3<Float>(0, 0, depthGrad)
        // J00 = fx/z, J11 = fy/z.
        dp.z -= dj00 * fx * invZ2 + dj11 * fy * invZ2
        // J02 = -fx r_x / z with r_x = x/z unless clamped (then constant).
        dp.z += dj02 * fx * pr.rx * invZ2 + dj12 * fy * pr.ry * invZ2
        if !pr.clampedX { dp.x -= dj02 * fx * invZ2; dp.z += dj02 * fx * pr.rx * invZ2 }
        if !pr.clampedY { dp.y -= dj12 * fy * invZ2; dp.z += dj12 * fy * pr.ry * invZ2 }
        // (u, v) = (fx x/z + cx, fy y/z + cy).
        dp.x += meanGrad.0 * fx * invZ
        dp.y += meanGrad.1 * fy * invZ
        dp.z -= (meanGrad.0 * fx * pr.pC.x + meanGrad.1 * fy * pr.pC.y) * invZ2
        // p_C = R_CW p_W + t: dL/dp_W = R_CWᵀ dL/dp_C.
        let dMean = dp.x * w.0 + dp.y * w.1 + dp.z * w.2
        return (dMean, dLogScale, dq)
    }
}

#if canImport(Glibc)
import Glibc
#endif
