import Foundation

/// A flat, 64-byte-aligned float32 buffer with a shape. Kernels take `data` directly; nothing in a hot
/// loop goes through Swift arrays.
public final class Tensor {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    public init(shape: [Int]) {
        self.shape = shape
        count = shape.reduce(1, *)
        var raw: UnsafeMutableRawPointer?
        posix_memalign(&raw, 64, max(count, 1) * MemoryLayout<Float>.stride)
        data = raw!.bindMemory(to: Float.self, capacity: max(count, 1))
        data.initialize(repeating: 0, count: count)
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "values do not fill the shape")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    deinit { free(data) }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    /// Row `i` of a 2-D view [count / lastDim, lastDim].
    public func row(_ i: Int) -> [Float] {
        let n = shape.last ?? count
        return Array(UnsafeBufferPointer(start: data + i * n, count: n))
    }
}
